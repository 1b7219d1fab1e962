// Writes the descriptions of the inputs and outputs in action.yml,
// restore/action.yml and save/action.yml from the README's Inputs and Outputs
// tables: each description is its table cell as plain text (links keep their
// text, code spans lose their backticks). readme.test.ts fails when they differ.
//   node scripts/input-docs.mjs
import { readFileSync, writeFileSync } from 'node:fs'

const FILES = ['action.yml', 'restore/action.yml', 'save/action.yml']
const readme = readFileSync('README.md', 'utf8').split('\n')

/** name → plain text of one column (0 is the name) of the table under a heading. */
function table(heading, column) {
  const start = readme.indexOf(heading)
  if (start < 0) throw new Error(`README.md has no heading ${heading}`)
  const out = new Map()
  for (const line of readme.slice(start + 1)) {
    if (/^#+ /.test(line)) break
    const cells = /^\|(.*)\|\s*$/
      .exec(line)?.[1]
      ?.split('|')
      .map(c => c.trim())
    const name = cells && /^`([a-z-]+)`$/.exec(cells[0])?.[1]
    if (name) out.set(name, plain(cells[column] ?? ''))
  }
  return out
}

function plain(markdown) {
  return markdown
    .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
    .replace(/`/g, '')
    .replace(/\s+/g, ' ')
    .trim()
}

/** A folded YAML block, wrapped at spaces only (never inside a word such as self-hosted). */
function folded(text) {
  const lines = []
  let line = ''
  for (const word of text.split(' ')) {
    if (line !== '' && line.length + 1 + word.length > 100) {
      lines.push(line)
      line = word
    } else line = line === '' ? word : `${line} ${word}`
  }
  lines.push(line)
  return `    description: >-\n${lines.map(l => `      ${l}\n`).join('')}`
}

/** Rewrites the descriptions of one top-level section (inputs: or outputs:) of an action.yml. */
function rewrite(yaml, section, texts, path) {
  const start = yaml.indexOf(`\n${section}:\n`)
  if (start < 0) return yaml
  const rest = yaml.slice(start + 1)
  const end = start + 1 + (/\n[a-z-]+:/.exec(rest.slice(1))?.index ?? rest.length - 1) + 2
  const body = yaml.slice(start, end).replace(/^ {2}([a-z-]+):\n {4}description: (?:>-?\n(?: {6}.*\n)+|.*\n)/gm, (_, name) => {
    const text = texts.get(name)
    if (text === undefined) throw new Error(`${path}: ${section.slice(0, -1)} ${name} has no row in the README's table`)
    return `  ${name}:\n${folded(text)}`
  })
  return yaml.slice(0, start) + body + yaml.slice(end)
}

const inputs = table('## Inputs', 2)
const outputs = table('## Outputs', 1)
for (const path of FILES) {
  const yaml = readFileSync(path, 'utf8')
  const next = rewrite(rewrite(yaml, 'inputs', inputs, path), 'outputs', outputs, path)
  if (next !== yaml) {
    writeFileSync(path, next)
    console.log(`${path}: descriptions written from README.md`)
  }
}
