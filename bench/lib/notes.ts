import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";

/** A benchmark's notes (bench/notes/<name>.md): prose that survives regenerating BENCHMARKS.md. */
export async function readNotes(name: string): Promise<string> {
  const file = fileURLToPath(new URL(`../notes/${name}.md`, import.meta.url));
  const text = await readFile(file, "utf8").catch(() => `_No notes yet: write them in bench/notes/${name}.md._`);
  return text.trim();
}
