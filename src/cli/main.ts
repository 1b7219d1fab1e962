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
import { helpText } from './usage.js'

/**
 * `buildkit-mount-cache restore|save|ls|prune`: the action's core driven
 * from a terminal or any CI. The options are the action's inputs, read and
 * validated by the same getInputs() as the action's through the CLI's own
 * reader (nothing is written into the environment); the store comes from
 * --backend. Returns the exit code: 0 on
 * success and on cache trouble (warnings), 1 on an unexpected failure,
 * 2 on a usage error.
 */
const COMMANDS: Record<Command, (ctx: CommandContext) => Promise<void>> = {
  restore: restoreCommand,
  save: saveCommand,
  ls: lsCommand,
  prune: pruneCommand
}

export async function main(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  let parsed: ParsedCli
  try {
    parsed = parseCli(argv, env)
  } catch (error) {
    process.stderr.write(`error: ${errorMessage(error)}\nRun buildkit-mount-cache --help for the commands and options.\n`)
    return error instanceof UsageError ? 2 : 1
  }
  if (parsed.help) {
    process.stdout.write(helpText(parsed.command))
    return 0
  }
  const { options } = parsed
  // The bundle pins its AWS SDK: the SDK's notice about the Node versions of its future releases does not apply.
  env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'
  const output = takeOverStdout({ json: options.json, verbose: options.verbose })
  setLogger(terminalLogger(output))
  let cleanup = async (): Promise<void> => undefined
  let code = 0
  try {
    parseBackend(options.backend)
    const scratch = await scratchDir(env)
    cleanup = scratch.cleanup
    await COMMANDS[options.command]({ options, output, store: openStore(options.backend), read: cliInputs(options), archiveRoot: scratch.root })
  } catch (error) {
    if (error instanceof UsageError || error instanceof InputError) {
      output.error(`${asOption(error)}\nRun buildkit-mount-cache --help for the commands and options.`)
      code = 2
    } else {
      output.error(errorMessage(error))
      if (error instanceof Error && error.stack) output.debug(error.stack)
      code = 1
    }
  } finally {
    await cleanup()
  }
  await new Promise<void>(resolve => output.close(resolve))
  return code
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
