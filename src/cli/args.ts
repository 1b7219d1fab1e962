import { join } from 'node:path'
import { parseArgs, type ParseArgsConfig } from 'node:util'

import { InputName, withDefaults, type InputReader } from '../action/inputs.js'
import { parseSize } from '../mounts/spec.js'
import { BACKEND_INPUT } from '../storage/select.js'
import { parseAge } from '../storage/prune.js'

/**
 * The CLI's command line. Every action input is an option of the same name
 * (so a new input is a new option without touching the CLI), except `state`
 * (the --state file) and `save` (the save command). Line-list inputs take a
 * repeatable option instead; `build-args` is `--build-arg K=V`, as in docker.
 */
export const COMMANDS = ['restore', 'save', 'ls', 'prune'] as const
export type Command = (typeof COMMANDS)[number]

export interface CliOptions {
  command: Command
  /** Action input name → value, for the inputs given on the command line. */
  inputs: Record<string, string>
  backend: string
  /** State file written by restore and read by save. */
  state: string
  json: boolean
  verbose: boolean
  /** prune only. */
  maxAgeMs?: number
  maxTotalBytes?: number
  dryRun: boolean
}

export type ParsedCli = { help: true; command?: Command } | { help: false; options: CliOptions }

/** A command line the CLI cannot run: exit code 2, with a pointer to --help. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'UsageError'
  }
}

/** Inputs that are not options: `state` is the --state file, `save` is the save command. */
const NOT_OPTIONS: ReadonlySet<string> = new Set([InputName.state, InputName.save, BACKEND_INPUT])

/** Inputs given as repeatable options: option name and how the values are joined. */
const LIST_INPUTS: Readonly<Record<string, { option: string; separator: string }>> = {
  [InputName.mounts]: { option: 'mounts', separator: '\n' },
  [InputName.dockerfile]: { option: 'dockerfile', separator: '\n' },
  [InputName.buildArgs]: { option: 'build-arg', separator: '\n' },
  [InputName.keyFiles]: { option: 'key-files', separator: '\n' },
  [InputName.platforms]: { option: 'platforms', separator: ',' }
}

export const DEFAULT_STATE_FILE = '.buildkit-mount-cache-state.json'

/** Inside GitHub Actions the Actions cache, elsewhere a directory in the user's cache dir. */
export function defaultBackend(env: NodeJS.ProcessEnv): string {
  if (env.GITHUB_ACTIONS === 'true') return 'github'
  const base = env.XDG_CACHE_HOME ? env.XDG_CACHE_HOME : '~/.cache'
  return `dir:${join(base, 'buildkit-mount-cache')}`
}

/** The action inputs offered as options, by option name. */
export function inputOptions(): Map<string, { input: string; list: boolean }> {
  const out = new Map<string, { input: string; list: boolean }>()
  for (const input of Object.values(InputName) as string[]) {
    if (NOT_OPTIONS.has(input)) continue
    const list = LIST_INPUTS[input]
    out.set(list ? list.option : input, { input, list: list !== undefined })
  }
  return out
}

export function parseCli(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): ParsedCli {
  const byOption = inputOptions()
  const config: ParseArgsConfig['options'] = {
    help: { type: 'boolean', short: 'h' },
    json: { type: 'boolean' },
    verbose: { type: 'boolean', short: 'v' },
    backend: { type: 'string' },
    state: { type: 'string' },
    'max-age': { type: 'string' },
    'max-total': { type: 'string' },
    'dry-run': { type: 'boolean' }
  }
  for (const [option, { list }] of byOption) config[option] = list ? { type: 'string', multiple: true } : { type: 'string' }
  let parsed: ReturnType<typeof parseArgs>
  try {
    parsed = parseArgs({ args: [...argv], options: config, allowPositionals: true, strict: true })
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message.replace(/\. To specify a positional.*$/s, '') : String(error))
  }
  const { values, positionals } = parsed
  const [first, ...extra] = positionals
  const command = first === 'help' ? undefined : first
  if (command !== undefined && !(COMMANDS as readonly string[]).includes(command)) {
    throw new UsageError(`unknown command "${command}" (commands: ${COMMANDS.join(', ')})`)
  }
  if (values.help === true || first === 'help') return command === undefined ? { help: true } : { help: true, command: command as Command }
  if (command === undefined) throw new UsageError(`a command is needed: ${COMMANDS.join(', ')}`)
  if (extra.length > 0) throw new UsageError(`unexpected argument "${extra[0] ?? ''}"`)
  const cmd = command as Command

  const inputs: Record<string, string> = {}
  for (const [option, { input, list }] of byOption) {
    const value = values[option]
    if (value === undefined) continue
    const separator = LIST_INPUTS[input]?.separator ?? '\n'
    inputs[input] = list ? (value as string[]).join(separator) : (value as string)
  }

  const options: CliOptions = {
    command: cmd,
    inputs,
    backend: typeof values.backend === 'string' ? values.backend : defaultBackend(env),
    state: typeof values.state === 'string' ? values.state : DEFAULT_STATE_FILE,
    json: values.json === true,
    verbose: values.verbose === true,
    dryRun: values['dry-run'] === true
  }
  const pruneOnly = ['max-age', 'max-total', 'dry-run'].filter(o => values[o] !== undefined)
  if (cmd !== 'prune' && pruneOnly.length > 0) throw new UsageError(`--${pruneOnly[0] ?? ''} is an option of prune only`)
  if (cmd !== 'restore' && cmd !== 'save' && values.state !== undefined) throw new UsageError('--state is an option of restore and save only')
  if (cmd === 'prune') {
    const age = values['max-age']
    if (typeof age === 'string') {
      const ms = parseAge(age)
      if (ms === undefined) throw new UsageError(`--max-age must be a duration like 7d, 12h or 30m, got "${age}"`)
      options.maxAgeMs = ms
    }
    const total = values['max-total']
    if (typeof total === 'string') {
      try {
        options.maxTotalBytes = parseSize(total, 'max-total', 'the value')
      } catch {
        throw new UsageError(`--max-total must be a size like 5G or 500M, got "${total}"`)
      }
    }
    if (options.maxAgeMs === undefined && options.maxTotalBytes === undefined) throw new UsageError('prune needs --max-age and/or --max-total')
  }
  return { help: false, options }
}

/**
 * The action's input reader over the command line: each input's option value,
 * else its action.yml default. `save` is the save command itself and
 * `backend` is --backend.
 */
export function cliInputs(options: CliOptions): InputReader {
  const given: Record<string, string> = { ...options.inputs, [InputName.save]: 'true', [InputName.state]: '', [BACKEND_INPUT]: options.backend }
  return withDefaults(name => given[name] ?? '')
}
