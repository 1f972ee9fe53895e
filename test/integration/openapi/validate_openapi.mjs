// Validates an OpenAPI document (file given as argv[2]) with
// @seriousme/openapi-schema-validator (the OpenAPI 3.1 JSON Schema), then
// resolves every $ref. Prints {"valid":bool,"version":...,"errors":[...]}.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "..", "package.json"));
const { Validator } = await import(require.resolve("@seriousme/openapi-schema-validator"));

const doc = JSON.parse(readFileSync(process.argv[2], "utf8"));
const v = new Validator();
const res = await v.validate(doc);
const out = { valid: res.valid, version: v.version, errors: res.errors || [] };
if (res.valid) {
  try {
    v.resolveRefs(); // throws on a $ref that points nowhere
  } catch (e) {
    out.valid = false;
    out.errors.push({ message: `resolveRefs: ${e.message}` });
  }
}
process.stdout.write(JSON.stringify(out) + "\n");
process.exit(out.valid ? 0 : 1);
