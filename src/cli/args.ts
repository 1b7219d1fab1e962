import { join } from 'node:path'
import { parseArgs, type ParseArgsConfig } from 'node:util'

import { InputName, withDefaults, type InputReader } from '../action/inputs.js'
import { parseSize } from '../mounts/spec.js'
import { BACKEND_INPUT } from '../storage/select.js'
import { parseAge } from '../storage/prune.js'
import { defaultStatePath } from './state-path.js'

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
  /** State file written by restore and read by save (--state, else defaultStatePath: outside the build context). */
  state: string
  json: boolean
  verbose: boolean
  /** prune only. */
  maxAgeMs?: number
  maxTotalBytes?: number
  dryRun: boolean
}

export type ParsedCli = { kind: 'help'; command?: Command } | { kind: 'version' } | { kind: 'run'; options: CliOptions }

/** A command line the CLI cannot run: exit code 2, with a pointer to --help (of the command, when known). */
export class UsageError extends Error {
  constructor(
    message: string,
    readonly command?: Command
  ) {
    super(message)
    this.name = 'UsageError'
  }
}

/** Options that are not action inputs, with what they take (for parseArgs). */
const OWN_OPTIONS = {
  backend: { type: 'string' },
  state: { type: 'string' },
  json: { type: 'boolean' },
  verbose: { type: 'boolean', short: 'v' },
  'max-age': { type: 'string' },
  'max-total': { type: 'string' },
  'dry-run': { type: 'boolean' }
} as const satisfies ParseArgsConfig['options']
export type OwnOption = keyof typeof OWN_OPTIONS

/**
 * What each command takes, in one place (parseCli enforces it, --help lists
 * it): the action inputs (`all`, or the listed ones) and its own options.
 * ls reads the inputs to name the mounts it groups entries by; prune only
 * the key prefix.
 */
export const COMMAND_OPTIONS: Readonly<Record<Command, { inputs: 'all' | readonly string[]; options: readonly OwnOption[] }>> = {
  restore: { inputs: 'all', options: ['backend', 'state', 'json', 'verbose'] },
  save: { inputs: 'all', options: ['backend', 'state', 'json', 'verbose'] },
  ls: { inputs: 'all', options: ['backend', 'json', 'verbose'] },
  prune: { inputs: [InputName.keyPrefix], options: ['backend', 'max-age', 'max-total', 'dry-run', 'json', 'verbose'] }
}

/** The option names (without --) a command accepts: its inputs' options and its own. */
export function commandOptions(command: Command): string[] {
  const { inputs, options } = COMMAND_OPTIONS[command]
  const fromInputs = [...inputOptions()].filter(([, { input }]) => inputs === 'all' || inputs.includes(input)).map(([option]) => option)
  return [...fromInputs, ...options]
}

/**
 * Inputs that are not options: `state` is the --state file, `save` is the
 * save command, and a token does not belong on a command line (where every
 * process of the machine can read it).
 */
const NOT_OPTIONS: ReadonlySet<string> = new Set([InputName.state, InputName.save, BACKEND_INPUT, InputName.githubToken])

/** Inputs given as repeatable options: option name and how the values are joined. */
const LIST_INPUTS: Readonly<Record<string, { option: string; separator: string }>> = {
  [InputName.mounts]: { option: 'mounts', separator: '\n' },
  [InputName.dockerfile]: { option: 'dockerfile', separator: '\n' },
  [InputName.buildArgs]: { option: 'build-arg', separator: '\n' },
  [InputName.keyFiles]: { option: 'key-files', separator: '\n' },
  [InputName.platforms]: { option: 'platforms', separator: ',' }
}

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

/**
 * The command line → what to do: help (of one command or all), the version,
 * or a command with its options. A command given an option it does not take
 * (COMMAND_OPTIONS) is a UsageError naming the commands that take it.
 */
export function parseCli(argv: readonly string[], env: NodeJS.ProcessEnv = process.env, cwd: string = process.cwd()): ParsedCli {
  const byOption = inputOptions()
  const config: ParseArgsConfig['options'] = {
    help: { type: 'boolean', short: 'h' },
    version: { type: 'boolean' },
    ...OWN_OPTIONS
  }
  for (const [option, { list }] of byOption) config[option] = list ? { type: 'string', multiple: true } : { type: 'string' }
  let parsed: ReturnType<typeof parseArgs>
  try {
    parsed = parseArgs({ args: [...argv], options: config, allowPositionals: true, strict: true })
  } catch (error) {
    // parseArgs's errors (checked by shape: they may come from another realm than this module's Error).
    const message = typeof error === 'object' && error !== null && 'message' in error ? String(error.message) : String(error)
    // The command, if one is recognisable, for the help pointer only.
    const named = argv.find(a => (COMMANDS as readonly string[]).includes(a)) as Command | undefined
    throw new UsageError(message.replace(/\. To specify a positional.*$/s, ''), named)
  }
  const { values, positionals } = parsed
  const [first, ...extra] = positionals
  // `help restore` is `restore --help`.
  const helpWord = first === 'help'
  const named = helpWord ? extra.shift() : first
  if (named !== undefined && !(COMMANDS as readonly string[]).includes(named)) {
    throw new UsageError(`unknown command "${named}" (commands: ${COMMANDS.join(', ')})`)
  }
  const command = named as Command | undefined
  if (values.help === true || helpWord) return command === undefined ? { kind: 'help' } : { kind: 'help', command }
  if (values.version === true) return { kind: 'version' }
  if (command === undefined) throw new UsageError(`a command is needed: ${COMMANDS.join(', ')}`)
  if (extra.length > 0) throw new UsageError(`unexpected argument "${extra[0] ?? ''}"`, command)
  const cmd = command
  const accepted = new Set(commandOptions(cmd))
  for (const option of Object.keys(values)) {
    if (option === 'help' || option === 'version' || accepted.has(option)) continue
    const takers = COMMANDS.filter(c => commandOptions(c).includes(option))
    throw new UsageError(`--${option} is an option of ${joinAnd(takers)} only`, cmd)
  }

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
    state:
      typeof values.state === 'string' ? values.state : defaultStatePath(env, cwd, withDefaults(name => inputs[name] ?? '')(InputName.keyPrefix)),
    json: values.json === true,
    verbose: values.verbose === true,
    dryRun: values['dry-run'] === true
  }
  if (cmd === 'prune') {
    const age = values['max-age']
    if (typeof age === 'string') {
      const ms = parseAge(age)
      if (ms === undefined) throw new UsageError(`--max-age must be a duration like 7d, 12h or 30m, got "${age}"`, cmd)
      options.maxAgeMs = ms
    }
    const total = values['max-total']
    if (typeof total === 'string') {
      try {
        options.maxTotalBytes = parseSize(total, 'max-total', 'the value')
      } catch {
        throw new UsageError(`--max-total must be a size like 5G or 500M, got "${total}"`, cmd)
      }
    }
    if (options.maxAgeMs === undefined && options.maxTotalBytes === undefined) throw new UsageError('prune needs --max-age and/or --max-total', cmd)
  }
  return { kind: 'run', options }
}

function joinAnd(words: readonly string[]): string {
  return words.length <= 1 ? (words[0] ?? '') : `${words.slice(0, -1).join(', ')} and ${words.at(-1) ?? ''}`
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
