import { getExecOutput } from '@actions/exec'

import { CommandError, errorMessage } from '../errors.js'
import type { RunOptions, RunResult } from './command.js'

/**
 * sh prints its process id, then `exec` turns it into the command itself
 * (same process), so the id is the command's. @actions/exec gives no way to
 * stop what it runs (no signal or timeout option, the child process is not
 * exposed), and no engine call may hang: this id is what the deadline stops.
 * (The shell passes on the environment but for names that are not shell
 * identifiers, such as INPUT_KEY-FILES: nothing the docker CLI reads.)
 * Its stdin is /dev/null: handing @actions/exec an empty input instead makes
 * it write to a pipe the command may have closed already (EPIPE, a failed call).
 */
const REPORT_PID = 'echo $$; exec "$0" "$@" </dev/null'

/**
 * A short call whose output is read whole (`docker buildx version`,
 * `buildx inspect`, `docker inspect`), through @actions/exec: quiet (no
 * echo of the command line), /dev/null on stdin, each output chunk counts as
 * activity for the deadline, and a call past it gets SIGTERM, then SIGKILL
 * 10 s later. Throws CommandError as runCommand does.
 */
export async function shortCall(command: string, args: readonly string[], options: Pick<RunOptions, 'env' | 'deadline'> = {}): Promise<RunResult> {
  const argv = [command, ...args]
  const { deadline } = options
  let pid: number | undefined
  let head = ''
  let expired: unknown
  let kill: NodeJS.Timeout | undefined
  const stop = (): void => {
    if (pid === undefined || expired === undefined || kill !== undefined) return
    signal(pid, 'SIGTERM')
    const target = pid
    kill = setTimeout(() => signal(target, 'SIGKILL'), 10_000)
    kill.unref()
  }
  const onExpired = (): void => {
    expired = deadline?.signal.reason
    stop()
  }
  deadline?.signal.addEventListener('abort', onExpired, { once: true })
  let result: { exitCode: number; stdout: string; stderr: string }
  try {
    result = await getExecOutput('sh', ['-c', REPORT_PID, command, ...args], {
      silent: true,
      ignoreReturnCode: true,
      env: definedEnv(options.env ?? process.env),
      listeners: {
        stdout: chunk => {
          deadline?.touch()
          if (pid !== undefined) return
          head += chunk.toString('latin1')
          const end = head.indexOf('\n')
          if (end < 0) return
          pid = Number(head.slice(0, end))
          stop()
        },
        stderr: () => deadline?.touch()
      }
    })
  } catch (error) {
    throw new CommandError(argv, null, '', error)
  } finally {
    deadline?.signal.removeEventListener('abort', onExpired)
    clearTimeout(kill)
  }
  if (expired !== undefined) throw new CommandError(argv, null, `stopped: ${errorMessage(expired)}`, expired)
  // The first line is sh's process id.
  const stdout = result.stdout.slice(result.stdout.indexOf('\n') + 1)
  if (result.exitCode !== 0) throw new CommandError(argv, result.exitCode, result.stderr)
  return { stdout, stderr: result.stderr }
}

/** Sends a signal to a process that may be gone already. */
function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name)
  } catch {
    // ESRCH: it ended.
  }
}

/** @actions/exec takes string values only. */
function definedEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined))
}
