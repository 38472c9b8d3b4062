import { z } from "zod";

/* zod schemas of values as the database stores them, for the schemas that check input before SQL does. */

/** An integer column (PostgreSQL's integer is 32 bits) at or above `min`. */
export const int32 = (min: number, max = 2_147_483_647) => z.int().min(min).max(max);

/**
 * A string PostgreSQL stores as given: text cannot hold NUL, and a lone surrogate would be
 * stored as U+FFFD (so two different holders would become one).
 */
export const text = (max: number) =>
  z
    .string()
    .min(1)
    .max(max)
    .refine((value) => !value.includes("\u0000") && !/\p{Cs}/u.test(value), "must be valid Unicode without NUL");
