import { spawn, type ChildProcess } from 'node:child_process'
import type { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'

import { CommandError, errorMessage } from '../errors.js'
import type { Deadline } from './deadline.js'
import { shortCall } from './short-call.js'

export interface RunOptions {
  env?: NodeJS.ProcessEnv
  /** Streamed to the command's stdin (closed when it ends). */
  stdin?: Readable
  /** Consumes the command's stdout; without it stdout is collected as text. */
  stdout?: (stream: Readable) => Promise<unknown>
  /** Called with each line the command writes to stderr (build progress). */
  onStderrLine?: (line: string) => void
  /** Stops the command when it passes (each output chunk counts as activity). */
  deadline?: Deadline
}

export interface RunResult {
  stdout: string
  stderr: string
}

/** Runs one command: argv array only, decided by its exit code, streams piped both ways. */
export type CommandRunner = (command: string, args: readonly string[], options?: RunOptions) => Promise<RunResult>

const STDERR_TAIL = 64 * 1024

/**
 * The one process runner. A short call whose output is read whole (nothing
 * on stdin, no stdout consumer, no stderr lines: docker/buildx version and
 * inspect) goes through @actions/exec (short-call.ts). The generated builds
 * both read a tar context from stdin and write a tar to stdout, and their
 * progress is read line by line, which @actions/exec cannot stream, so for
 * them this wraps child_process.spawn with stream pipelines.
 * Throws CommandError when the command cannot start or exits non-zero;
 * a stdout consumer's own error wins over the exit code (it explains more).
 */
export const runCommand: CommandRunner = async (command, args, options = {}) => {
  if (!options.stdin && !options.stdout && !options.onStderrLine) return shortCall(command, args, options)
  return runStreaming(command, args, options)
}

const runStreaming: CommandRunner = async (command, args, options = {}) => {
  const argv = [command, ...args]
  const child = spawn(command, args, {
    env: options.env ?? process.env,
    stdio: [options.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe']
  })
  const { stdout: out, stderr: err } = child
  if (!out || !err) throw new CommandError(argv, null, 'no stdio pipes')
  let stderr = ''
  let partial = ''
  const { deadline } = options
  let expired: unknown
  const onExpired = (): void => {
    expired = deadline?.signal.reason
    stop(child)
  }
  deadline?.signal.addEventListener('abort', onExpired, { once: true })
  err.setEncoding('utf8')
  err.on('data', (chunk: string) => {
    deadline?.touch()
    stderr = (stderr + chunk).slice(-STDERR_TAIL)
    if (!options.onStderrLine) return
    const lines = (partial + chunk).split('\n')
    partial = lines.pop() ?? ''
    for (const line of lines) options.onStderrLine(line)
  })

  const exited = new Promise<number | null>((resolve, reject) => {
    child.once('error', reject)
    child.once('close', code => resolve(code))
  })
  const feeding = options.stdin && child.stdin ? pipeline(options.stdin, child.stdin) : Promise.resolve()
  let stdoutText = ''
  const consuming = options.stdout
    ? options.stdout(out)
    : (async () => {
        out.setEncoding('utf8')
        for await (const chunk of out) stdoutText += chunk as string
      })()
  // Only once the consumer reads: a 'data' listener alone would start the flow before it is there.
  if (deadline) out.on('data', () => deadline.touch())

  const [feed, consume, exit] = await Promise.allSettled([feeding, consuming, exited])
  deadline?.signal.removeEventListener('abort', onExpired)
  if (partial && options.onStderrLine) options.onStderrLine(partial)
  if (expired !== undefined) throw new CommandError(argv, null, `stopped: ${errorMessage(expired)}`, expired)
  if (exit.status === 'rejected') throw new CommandError(argv, null, stderr, exit.reason)
  if (consume.status === 'rejected') {
    if (exit.value === 0) throw consume.reason
    throw new CommandError(argv, exit.value, stderr, consume.reason)
  }
  if (exit.value !== 0) throw new CommandError(argv, exit.value, stderr)
  if (feed.status === 'rejected') throw new CommandError(argv, exit.value, stderr, feed.reason)
  return { stdout: stdoutText, stderr }
}

/** Ends a command past its deadline: SIGTERM, then SIGKILL if it is still there 10 s later; its pipes are cut. */
function stop(child: ChildProcess): void {
  child.kill('SIGTERM')
  const kill = setTimeout(() => child.kill('SIGKILL'), 10_000)
  kill.unref()
  child.once('close', () => clearTimeout(kill))
  child.stdin?.destroy()
}
