// Runs a bundled entry point as if on a runner of its own: the same
// RUNNER_TEMP path as every other job (the cache hashes the archive path
// into the entry version, and GitHub's runners all use one path), but backed
// by a private directory through a bind mount in a private mount namespace
// (`unshare -m`, root only). Two "jobs" racing on one machine then behave
// like two jobs on two runners.
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { parseFileCommands, REPO_ROOT, type StepOptions, type StepResult } from '../action-runner.js'

export interface IsolatedStepOptions extends StepOptions {
  /** The RUNNER_TEMP path every job sees. */
  runnerTemp: string
  /** This job's own directory behind it. */
  privateTemp: string
}

export async function runIsolatedStep(entry: 'main' | 'post' | 'restore-only' | 'save-only', options: IsolatedStepOptions): Promise<StepResult> {
  const files = mkdtempSync(join(tmpdir(), 'bmc-iso-step-'))
  const stateFile = join(files, 'state')
  const outputFile = join(files, 'output')
  writeFileSync(stateFile, '')
  writeFileSync(outputFile, '')
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    ...options.env,
    RUNNER_TEMP: options.runnerTemp,
    GITHUB_STATE: stateFile,
    GITHUB_OUTPUT: outputFile
  }
  for (const [name, value] of Object.entries(options.inputs)) env[`INPUT_${name.replace(/ /g, '_').toUpperCase()}`] = value
  for (const [name, value] of Object.entries(options.state ?? {})) env[`STATE_${name}`] = value
  const wrapper = join(REPO_ROOT, 'test-support/hostile/bind-and-run.cjs')
  const argv = [
    '--mount',
    '--propagation',
    'private',
    process.execPath,
    wrapper,
    options.privateTemp,
    options.runnerTemp,
    join(options.bundleDir, `${entry}.cjs`)
  ]
  try {
    const child = spawn('unshare', argv, { cwd: options.cwd ?? REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c))
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c))
    const exitCode = await new Promise<number | null>((res, rej) => {
      child.once('error', rej)
      child.once('close', code => res(code))
    })
    const commands = (kind: string): string[] =>
      stdout
        .split('\n')
        .filter(l => l.startsWith(`::${kind}`))
        .map(l =>
          l
            .slice(l.indexOf('::', 2) + 2)
            .replace(/%0A/g, '\n')
            .replace(/%25/g, '%')
        )
    return {
      exitCode,
      stdout,
      stderr,
      outputs: parseFileCommands(readFileSync(outputFile, 'utf8')),
      state: parseFileCommands(readFileSync(stateFile, 'utf8')),
      warnings: commands('warning'),
      errors: commands('error')
    }
  } finally {
    rmSync(files, { recursive: true, force: true })
  }
}
