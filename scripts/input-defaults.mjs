// Writes src/action/input-defaults.ts from action.yml: the inputs' defaults
// live in action.yml only, and the CLI (which has no runner to fill them in)
// reads this generated copy. `npm run build` runs it; check-dist and a unit
// test fail when it is stale.
//   node scripts/input-defaults.mjs [--check]
import { readFileSync, writeFileSync } from 'node:fs'

import { load } from 'js-yaml'

const action = load(readFileSync('action.yml', 'utf8'))
// An expression default (github-token's `${{ github.token }}`) only means something where a runner evaluates it.
const defaults = Object.fromEntries(
  Object.entries(action.inputs)
    .filter(([, input]) => input.default !== undefined && input.default !== '' && !String(input.default).includes('${{'))
    .map(([name, input]) => [name, String(input.default)])
)
const text = `// Generated from action.yml by scripts/input-defaults.mjs: do not edit.
/** The action's input defaults, for readers that no runner fills in (the CLI, tests). */
export const INPUT_DEFAULTS: Readonly<Record<string, string>> = ${JSON.stringify(defaults, null, 2)
  .replace(/"([a-z]+)":/g, '$1:')
  .replace(/"([a-z-]+)":/g, "'$1':")
  .replace(/: "([^"]*)"/g, ": '$1'")}
`
const path = 'src/action/input-defaults.ts'
if (process.argv.includes('--check')) {
  if (readFileSync(path, 'utf8') !== text) {
    console.error(`${path} is stale: run node scripts/input-defaults.mjs`)
    process.exit(1)
  }
} else {
  writeFileSync(path, text)
}
