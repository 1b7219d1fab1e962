import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'

/**
 * Runs the action's bundled entry points the way the GitHub runner does:
 * inputs as INPUT_* variables, file commands (GITHUB_STATE, GITHUB_OUTPUT)
 * read back after the step, state handed to the post step as STATE_*.
 */
export interface StepResult {
  exitCode: number | null
  stdout: string
  stderr: string
  outputs: Record<string, string>
  state: Record<string, string>
  warnings: string[]
  errors: string[]
}

export const REPO_ROOT = resolve(new URL('..', import.meta.url).pathname)

/** The node that runs the bundled steps: the runner's Node 24 when scripts/test.sh provides it (BMC_TEST_NODE). */
export const STEP_NODE = process.env.BMC_TEST_NODE || process.execPath

/** Bundles src/entry/* into a fresh temp dir so tests never run a stale dist/. */
export function bundleAction(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'bmc-bundle-'))
  const r = spawnSync(process.execPath, [join(REPO_ROOT, 'scripts/bundle.mjs'), dir], { cwd: REPO_ROOT, encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`bundling failed:\n${r.stderr}`)
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) }
}

export interface StepOptions {
  bundleDir: string
  inputs: Record<string, string>
  env?: NodeJS.ProcessEnv
  state?: Record<string, string>
  cwd?: string
}

export type EntryName = 'main' | 'post' | 'restore-only' | 'save-only'

export async function runStep(entry: EntryName, options: StepOptions): Promise<StepResult> {
  return runStepVia(entry, options, script => [STEP_NODE, [script]])
}

/**
 * The runner's side of one step, with the command line chosen by `launch`
 * (given the bundled script's path): e.g. node directly, or node inside a
 * private mount namespace. `envOverrides` win over options.env.
 */
export async function runStepVia(
  entry: EntryName,
  options: StepOptions,
  launch: (script: string) => [string, string[]],
  envOverrides: NodeJS.ProcessEnv = {}
): Promise<StepResult> {
  const files = mkdtempSync(join(tmpdir(), 'bmc-step-'))
  const stateFile = join(files, 'state')
  const outputFile = join(files, 'output')
  writeFileSync(stateFile, '')
  writeFileSync(outputFile, '')
  const env: NodeJS.ProcessEnv = { ...process.env, ...options.env, ...envOverrides, GITHUB_STATE: stateFile, GITHUB_OUTPUT: outputFile }
  for (const [name, value] of Object.entries(options.inputs)) env[`INPUT_${name.replace(/ /g, '_').toUpperCase()}`] = value
  for (const [name, value] of Object.entries(options.state ?? {})) env[`STATE_${name}`] = value
  try {
    const [command, args] = launch(join(options.bundleDir, `${entry}.cjs`))
    const child = spawn(command, args, { cwd: options.cwd ?? REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c))
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c))
    const exitCode = await new Promise<number | null>((res, rej) => {
      child.once('error', rej)
      child.once('close', code => res(code))
    })
    return {
      exitCode,
      stdout,
      stderr,
      outputs: parseFileCommands(readFileSync(outputFile, 'utf8')),
      state: parseFileCommands(readFileSync(stateFile, 'utf8')),
      warnings: workflowCommands(stdout, 'warning'),
      errors: workflowCommands(stdout, 'error')
    }
  } finally {
    rmSync(files, { recursive: true, force: true })
  }
}

/** Parses `name<<DELIM\nvalue\nDELIM` records (and plain `name=value` lines); later values win. */
export function parseFileCommands(text: string): Record<string, string> {
  const out: Record<string, string> = {}
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] ?? ''
    const heredoc = /^([^=<]+)<<(.+)$/.exec(line)
    if (heredoc) {
      const [, name = '', delimiter] = heredoc
      const value: string[] = []
      for (i++; i < lines.length && lines[i] !== delimiter; i++) value.push(lines[i] ?? '')
      out[name] = value.join('\n')
    } else if (line.includes('=')) {
      out[line.slice(0, line.indexOf('='))] = line.slice(line.indexOf('=') + 1)
    }
  }
  return out
}

function workflowCommands(stdout: string, kind: string): string[] {
  return stdout
    .split('\n')
    .filter(l => l.startsWith(`::${kind}`))
    .map(l =>
      l
        .slice(l.indexOf('::', 2) + 2)
        .replace(/%0A/g, '\n')
        .replace(/%25/g, '%')
    )
}
