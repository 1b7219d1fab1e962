import { errorMessage, InputError } from '../errors.js'
import { setLogger } from '../log.js'
import { BACKEND_INPUT, openStore, parseBackend } from '../storage/select.js'
import { cliInputs, inputOptions, parseCli, UsageError, type Command, type ParsedCli } from './args.js'
import type { CommandContext } from './command-context.js'
import { lsCommand } from './ls-command.js'
import { takeOverStdout, terminalLogger } from './output.js'
import { pruneCommand } from './prune-command.js'
import { restoreCommand } from './restore-command.js'
import { saveCommand } from './save-command.js'
import { scratchDir } from './scratch.js'
import { EXIT_CODES, type ExitCode } from './exit-codes.js'
import { helpText } from './usage.js'
import { cliVersion } from './version.js'

/**
 * `buildkit-mount-cache restore|save|ls|prune`: the action's core driven
 * from a terminal or any CI. The options are the action's inputs, read and
 * validated by the same getInputs() as the action's through the CLI's own
 * reader (nothing is written into the environment); the store comes from
 * --backend. Returns the exit code (exit-codes.ts): ok on success and on
 * cache trouble (warnings), usage for a bad command line, option, input or
 * state file, failure for anything else.
 */
const COMMANDS: Record<Command, (ctx: CommandContext) => Promise<void>> = {
  restore: restoreCommand,
  save: saveCommand,
  ls: lsCommand,
  prune: pruneCommand
}

/** Where the CLI writes (the process's streams; tests pass their own). */
export interface CliStreams {
  stdout: NodeJS.WriteStream
  stderr: NodeJS.WriteStream
}

export async function main(
  argv: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
  streams: CliStreams = { stdout: process.stdout, stderr: process.stderr }
): Promise<ExitCode> {
  let parsed: ParsedCli
  try {
    parsed = parseCli(argv, env)
  } catch (error) {
    streams.stderr.write(`error: ${errorMessage(error)}\n${helpPointer(error)}\n`)
    return error instanceof UsageError ? EXIT_CODES.usage : EXIT_CODES.failure
  }
  if (parsed.kind === 'help') {
    streams.stdout.write(helpText(parsed.command))
    return EXIT_CODES.ok
  }
  if (parsed.kind === 'version') {
    streams.stdout.write(`${cliVersion()}\n`)
    return EXIT_CODES.ok
  }
  const { options } = parsed
  // The bundle pins its AWS SDK: the SDK's notice about the Node versions of its future releases does not apply.
  env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'
  const output = takeOverStdout({ json: options.json, verbose: options.verbose, ...streams })
  setLogger(terminalLogger(output))
  let cleanup = async (): Promise<void> => undefined
  let code: ExitCode = EXIT_CODES.ok
  try {
    parseBackend(options.backend)
    const scratch = await scratchDir(env)
    cleanup = scratch.cleanup
    await COMMANDS[options.command]({ options, output, store: openStore(options.backend), read: cliInputs(options), archiveRoot: scratch.root })
  } catch (error) {
    if (error instanceof UsageError || error instanceof InputError) {
      output.error(`${asOption(error)}\n${helpPointer(error, options.command)}`)
      code = EXIT_CODES.usage
    } else {
      output.error(errorMessage(error))
      if (error instanceof Error && error.stack) output.debug(error.stack)
      code = EXIT_CODES.failure
    }
  } finally {
    await cleanup()
  }
  await new Promise<void>(resolve => output.close(resolve))
  return code
}

/** Where to read on after a usage error: the command's own --help when the command is known. */
function helpPointer(error: unknown, command?: Command): string {
  const known = error instanceof UsageError && error.command !== undefined ? error.command : command
  return known === undefined ? 'Run buildkit-mount-cache --help for the commands.' : `Run buildkit-mount-cache ${known} --help for its options.`
}

/** An input error worded for the command line: `Input "build-args": …` → `--build-arg: …`. */
export function asOption(error: Error): string {
  if (!(error instanceof InputError)) return error.message
  const byInput = new Map([...inputOptions()].map(([option, { input }]) => [input, option]))
  byInput.set(BACKEND_INPUT, 'backend')
  const option = byInput.get(error.input)
  if (option === undefined) return error.message
  return `--${option}${error.location ? ` (${error.location})` : ''}: ${error.detail}`
}
