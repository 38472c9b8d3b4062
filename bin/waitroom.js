#!/usr/bin/env node
// The `waitroom` command: runs src/main.ts through tsx, resolved from this package wherever it is called.
import { register } from "tsx/esm/api";

register();
await import("../src/main.ts");
