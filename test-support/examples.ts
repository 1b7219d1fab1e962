// The README's examples as data: the example directories, the README's code blocks,
// workflow steps and input tables. Shared by the README agreement checks (unit tier)
// and the examples' runs on a real engine (integration tier).
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

import { load } from 'js-yaml'

import { discoverMounts, parseMountFlag } from '../src/discover/index.js'
import { REPO_ROOT } from './action-runner.js'

export const EXAMPLES = join(REPO_ROOT, 'examples')
export const README = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8')
export const OUR_ACTION = /^<owner>\/buildkit-mount-cache(\/restore|\/save)?@v1$/
export const RUNNER_PLATFORM = 'linux/amd64'

/** One step of this action in a workflow: `uses`, optional `id` and `if`, and its `with` inputs. */
export interface StepDef {
  uses: string
  id?: string
  if?: string
  with: Record<string, string>
}

/** examples/<name>/inputs.json */
export interface ExampleDef {
  /** Matrix combinations (the README's `strategy.matrix`); one run each. */
  matrix?: Record<string, string>[]
  steps: StepDef[]
}

export const exampleNames = readdirSync(EXAMPLES, { withFileTypes: true })
  .filter(d => d.isDirectory())
  .map(d => d.name)
  .sort()

export function exampleDef(name: string): ExampleDef {
  return JSON.parse(readFileSync(join(EXAMPLES, name, 'inputs.json'), 'utf8')) as ExampleDef
}

export function testedDockerfile(name: string): string {
  return readFileSync(join(EXAMPLES, name, 'Dockerfile'), 'utf8')
}

// ---------------------------------------------------------------------------
// README parsing

export interface CodeBlock {
  lang: string
  text: string
  /** 1-based line of the opening fence. */
  line: number
  /** From a `# example: <name>` line in the block. */
  example?: string
}

/** Fenced code blocks, de-indented when they sit in a list. */
export function codeBlocks(markdown: string): CodeBlock[] {
  const lines = markdown.split('\n')
  const blocks: CodeBlock[] = []
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)(`{3,}|~{3,})\s*([\w-]*)\s*$/.exec(lines[i] ?? '')
    if (!open) continue
    const [, indent = '', fence = '```', lang = ''] = open
    const start = i + 1
    const body: string[] = []
    for (i++; i < lines.length; i++) {
      const line = lines[i] ?? ''
      if (line.trim().startsWith(fence) && /^[`~]+$/.test(line.trim())) break
      body.push(line.slice(Math.min(indent.length, line.length - line.trimStart().length)))
    }
    const text = body.join('\n')
    const tag = /^\s*#\s*example:\s*([a-z0-9-]+)\s*$/m.exec(text)
    blocks.push({ lang: lang.toLowerCase(), text, line: start, ...(tag?.[1] ? { example: tag[1] } : {}) })
  }
  return blocks
}

/** A Dockerfile's RUN --mount flags of type cache and tmpfs, as BuildKit parses them (variables left as written), deduplicated. */
export function mountFlags(dockerfile: string): string[] {
  const joined = dockerfile
    .split('\n')
    .filter(l => !/^\s*#/.test(l))
    .join('\n')
    .replace(/\\[ \t]*\n/g, ' ')
  const found = new Set<string>()
  for (const line of joined.split('\n')) {
    const run = /^\s*RUN\s+(.*)$/i.exec(line)
    if (!run) continue
    for (const word of (run[1] ?? '').split(/\s+/)) {
      if (!word.startsWith('--')) break
      if (!word.startsWith('--mount=')) continue
      const options = parseMountFlag(word.slice('--mount='.length))
      if (options.type !== 'cache' && options.type !== 'tmpfs') continue
      found.add(JSON.stringify(Object.fromEntries(Object.entries(options).sort(([a], [b]) => a.localeCompare(b)))))
    }
  }
  return [...found].sort()
}

/** Cache mounts as discovery sees them for one platform: specs, and warnings. */
export function discovered(dockerfile: string, platform = RUNNER_PLATFORM): { specs: string[]; warnings: string[] } {
  const r = discoverMounts({
    dockerfiles: [{ path: 'Dockerfile', content: dockerfile }],
    buildArgs: {},
    platforms: [platform],
    buildPlatform: RUNNER_PLATFORM
  })
  return { specs: r.mounts.map(m => JSON.stringify(m.spec)).sort(), warnings: r.warnings }
}

/** The steps of this action anywhere in a workflow or a list of steps: `uses`, `id`, `if` and `with` (as strings, block scalars without their final newline). */
export function actionSteps(yaml: string): StepDef[] {
  const steps: StepDef[] = []
  const visit = (node: unknown): void => {
    if (Array.isArray(node)) node.forEach(visit)
    else if (node !== null && typeof node === 'object') {
      const o = node as Record<string, unknown>
      if (typeof o.uses === 'string' && OUR_ACTION.test(o.uses)) {
        const step: StepDef = { uses: o.uses, with: {} }
        if (o.id !== undefined) step.id = String(o.id)
        if (o.if !== undefined) step.if = String(o.if)
        for (const [k, v] of Object.entries((o.with ?? {}) as Record<string, unknown>)) step.with[k] = String(v).replace(/\n$/, '')
        steps.push(step)
      } else Object.values(o).forEach(visit)
    }
  }
  visit(load(yaml))
  return steps
}

export interface ActionYml {
  inputs: Record<string, { default?: string; description?: string }>
  outputs?: Record<string, { description?: string }>
}

/** The three action.yml files: the combined action and the sub-actions, as the README's "accepted by" column names them. */
export const ACTION_FILES = { 'main action': 'action.yml', 'restore/': 'restore/action.yml', 'save/': 'save/action.yml' } as const

/** Inputs and outputs of an action.yml with their descriptions (whitespace collapsed) and defaults. */
export function actionMeta(path: string): {
  inputs: Map<string, { default: string; description: string }>
  outputs: Map<string, string>
} {
  const a = load(readFileSync(join(REPO_ROOT, path), 'utf8')) as ActionYml
  return {
    inputs: new Map(Object.entries(a.inputs).map(([k, v]) => [k, { default: String(v.default ?? ''), description: collapse(v.description ?? '') }])),
    outputs: new Map(Object.entries(a.outputs ?? {}).map(([k, v]) => [k, collapse(v.description ?? '')]))
  }
}

function collapse(text: string): string {
  return text.replace(/\s+/g, ' ').trim()
}

/**
 * A table cell as plain text, the form action.yml descriptions take: links
 * keep their text, code spans lose their backticks, whitespace collapses.
 */
export function plainText(markdown: string): string {
  return collapse(markdown.replace(/\[([^\]]*)\]\([^)]*\)/g, '$1').replace(/`/g, ''))
}

export function actionYml(path: string): { inputs: Map<string, string>; outputs: string[] } {
  const a = load(readFileSync(join(REPO_ROOT, path), 'utf8')) as ActionYml
  return { inputs: new Map(Object.entries(a.inputs).map(([k, v]) => [k, String(v.default ?? '')])), outputs: Object.keys(a.outputs ?? {}) }
}

/** The first cells of the table under a README heading, by first-column name. */
export function tableUnder(heading: RegExp): Map<string, string[]> {
  const lines = README.split('\n')
  const start = lines.findIndex(l => /^#+ /.test(l) && heading.test(l.replace(/^#+ /, '')))
  if (start < 0) throw new Error(`README has no heading ${heading}`)
  const rows = new Map<string, string[]>()
  for (const line of lines.slice(start + 1)) {
    if (/^#+ /.test(line)) break
    const cells = /^\|(.*)\|\s*$/
      .exec(line)?.[1]
      ?.split('|')
      .map(c => c.trim())
    const name = cells?.[0] && /^`([a-z-]+)`$/.exec(cells[0])?.[1]
    if (cells && name) rows.set(name, cells.slice(1))
  }
  return rows
}

export const blocks = codeBlocks(README)
