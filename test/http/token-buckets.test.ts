import { describe, expect, it } from "vitest";
import { addressKey, TokenBuckets } from "../../src/http/limits.js";

/* The arithmetic of the per-client limits, on a clock the test moves. */

describe("TokenBuckets", () => {
  it("gives the burst at once, then a token per refill interval, and says how long to wait", () => {
    const buckets = new TokenBuckets({ perSecond: 0.1, burst: 3 });
    const at = (seconds: number) => seconds * 1000;
    expect([0, 0, 0].map(() => buckets.take("a", at(0)))).toEqual([0, 0, 0]);
    expect(buckets.take("a", at(0))).toBe(10);
    expect(buckets.take("a", at(4))).toBe(6);
    expect(buckets.take("a", at(10))).toBe(0);
    expect(buckets.take("a", at(10))).toBe(10);
    // Other keys have their own bucket.
    expect(buckets.take("b", at(10))).toBe(0);
    // Refilling stops at the burst, however long the wait.
    expect([0, 0, 0, 0].map(() => buckets.take("a", at(10_000)))).toEqual([0, 0, 0, 10]);
  });
});

describe("addressKey", () => {
  it("unwraps IPv4-mapped addresses and counts IPv6 by its /64", () => {
    expect(addressKey("203.0.113.5")).toBe("203.0.113.5");
    expect(addressKey("::ffff:203.0.113.5")).toBe("203.0.113.5");
    expect(addressKey("2001:db8:1:2::1")).toBe("2001:db8:1:2::/64");
    expect(addressKey("2001:0DB8:0001:0002:ffff:0:0:9")).toBe("2001:db8:1:2::/64");
    expect(addressKey("2001:db8::1")).toBe("2001:db8:0:0::/64");
    expect(addressKey("::1")).toBe("0:0:0:0::/64");
    expect(addressKey("fe80::1%eth0")).toBe("fe80:0:0:0::/64");
  });
});
