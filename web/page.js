/*
 * A room's own page: its title, message, logo, help link, admitted text and
 * brand colour, from the settings the server wrote into #page-settings (JSON,
 * read as data). Each is set as text or as a property, never as HTML, so no
 * setting can add markup or script; the CSP allows images from the logo's
 * origin only.
 */

/** Relative luminance of #rrggbb (WCAG 2). */
function luminance(hex) {
  const [r, g, b] = [1, 3, 5].map((at) => {
    const c = Number.parseInt(hex.slice(at, at + 2), 16) / 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}

/** Black or white, whichever contrasts more with the brand colour: at least 4.5:1 whatever the colour. */
export function textOn(hex) {
  const light = luminance(hex);
  return (light + 0.05) / 0.05 >= 1.05 / (light + 0.05) ? "#000000" : "#ffffff";
}

function readSettings() {
  try {
    const value = JSON.parse(document.getElementById("page-settings")?.textContent ?? "null");
    return value && typeof value === "object" ? value : {};
  } catch {
    return {};
  }
}

/** Translate the page's fixed words, apply the room's settings; the page's title and admitted text for room.js. */
export function applyPage(words) {
  const root = document.getElementById("room");
  const settings = readSettings();
  words.translate(document);

  const title = typeof settings.title === "string" ? settings.title : root.dataset.room;
  document.getElementById("title").textContent = title;

  const message = document.getElementById("message");
  message.textContent = settings.message ?? "";
  message.hidden = !settings.message;

  if (typeof settings.logo_url === "string") {
    const logo = document.getElementById("logo");
    // A logo that does not load leaves no broken image behind.
    logo.addEventListener("error", () => {
      logo.hidden = true;
    });
    logo.src = settings.logo_url;
    logo.hidden = false;
  }

  if (typeof settings.help_url === "string") {
    document.getElementById("help-link").href = settings.help_url;
    document.getElementById("help").hidden = false;
  }

  if (typeof settings.brand_color === "string" && /^#[0-9a-f]{6}$/i.test(settings.brand_color)) {
    root.style.setProperty("--brand", settings.brand_color);
    root.style.setProperty("--on-brand", textOn(settings.brand_color));
  }

  return { title, admittedText: typeof settings.admitted_text === "string" ? settings.admitted_text : null };
}
