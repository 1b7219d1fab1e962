import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/**
 * The runner's file commands for a test: GITHUB_STATE, GITHUB_OUTPUT and
 * GITHUB_STEP_SUMMARY point at temp files (@actions/core appends
 * `name<<delimiter` records to the first two), RUNNER_TEMP at a temp dir.
 * `read` parses a file-command file back into name → value (the last
 * record of a name wins, as the runner does).
 */
export class ActionsEnv {
  readonly dir = mkdtempSync(join(tmpdir(), 'bmc-actions-env-'))
  readonly statePath = join(this.dir, 'state')
  readonly outputPath = join(this.dir, 'output')
  readonly summaryPath = join(this.dir, 'summary')
  private readonly saved = new Map<string, string | undefined>()

  install(extra: Record<string, string | undefined> = {}): this {
    for (const p of [this.statePath, this.outputPath, this.summaryPath]) writeFileSync(p, '')
    this.set({ GITHUB_STATE: this.statePath, GITHUB_OUTPUT: this.outputPath, GITHUB_STEP_SUMMARY: this.summaryPath, RUNNER_TEMP: this.dir, ...extra })
    return this
  }

  /**
   * Empties the files and puts the environment back as it was before
   * install(), keeping the directory: @actions/core's summary keeps the
   * first GITHUB_STEP_SUMMARY path it saw, so one env serves a whole test
   * file and each test (or step) starts with reset() and install().
   */
  reset(): void {
    for (const [k, v] of this.saved) {
      if (v === undefined) delete process.env[k]
      else process.env[k] = v
    }
    this.saved.clear()
    for (const p of [this.statePath, this.outputPath, this.summaryPath]) writeFileSync(p, '')
  }

  /** Sets (or, with undefined, removes) environment variables, remembering the old values. */
  set(vars: Record<string, string | undefined>): void {
    for (const [k, v] of Object.entries(vars)) {
      if (!this.saved.has(k)) this.saved.set(k, process.env[k])
      if (v === undefined) delete process.env[k]
      else process.env[k] = v
    }
  }

  state(): Record<string, string> {
    return parseFileCommands(readFileSync(this.statePath, 'utf8'))
  }

  outputs(): Record<string, string> {
    return parseFileCommands(readFileSync(this.outputPath, 'utf8'))
  }

  summary(): string {
    return readFileSync(this.summaryPath, 'utf8')
  }

  /** What the runner does between main and post: the saved state as STATE_<name>. */
  handStateToPost(): void {
    for (const [name, value] of Object.entries(this.state())) this.set({ [`STATE_${name}`]: value })
  }

  dispose(): void {
    this.reset()
    rmSync(this.dir, { recursive: true, force: true })
  }
}

export function parseFileCommands(text: string): Record<string, string> {
  const out: Record<string, string> = {}
  const lines = text.split(/\r?\n/)
  for (let i = 0; i < lines.length; i++) {
    const m = /^([^<]+)<<(.+)$/.exec(lines[i] ?? '')
    if (!m) continue
    const [, name, delimiter] = m as unknown as [string, string, string]
    const value: string[] = []
    for (i++; i < lines.length && lines[i] !== delimiter; i++) value.push(lines[i] ?? '')
    out[name] = value.join('\n')
  }
  return out
}
