import { AsyncLocalStorage } from 'node:async_hooks'

import * as core from '@actions/core'

/**
 * Where the restore/save code reports. Inside Actions it is @actions/core
 * (annotations, log groups); the CLI swaps in a plain terminal logger.
 */
export interface Logger {
  info(message: string): void
  notice(message: string): void
  warning(message: string): void
  debug(message: string): void
  group<T>(name: string, fn: () => Promise<T>): Promise<T>
}

export const actionsLogger: Logger = {
  info: m => core.info(m),
  notice: m => core.notice(m),
  warning: m => core.warning(m),
  debug: m => core.debug(m),
  group: (name, fn) => core.group(name, fn)
}

let current: Logger = actionsLogger

/** Every line logged inside withLabel() carries the label (see labelled()). */
export const log: Logger = {
  info: m => current.info(labelled(m)),
  notice: m => current.notice(labelled(m)),
  warning: m => current.warning(labelled(m)),
  debug: m => current.debug(labelled(m)),
  group: (name, fn) => current.group(name, fn)
}

export function setLogger(logger: Logger): void {
  current = logger
}

/**
 * The log context of the code running now: the mount it works on, and
 * library lines to leave out. Kept by AsyncLocalStorage, so timers and
 * callbacks started inside (the cache library's progress timer) keep it.
 */
interface LogContext {
  label?: string
  drop?: RegExp
}

const context = new AsyncLocalStorage<LogContext>()

/**
 * Runs `fn` with every line it logs, through `log` or written to stdout by a
 * library (the cache client's `Received …` lines, its warnings), labelled
 * `<label>: `. Mounts are restored and saved in parallel; this is how a line
 * says which one it is about.
 */
export async function withLabel<T>(label: string, fn: () => Promise<T>): Promise<T> {
  labelStdout()
  return context.run({ ...context.getStore(), label }, fn)
}

/**
 * Runs `fn` with the plain lines (not warnings, errors or debug lines) a
 * library writes to stdout that match `drop` left out: the facts our own
 * log line states once.
 */
export async function withoutLines<T>(drop: RegExp, fn: () => Promise<T>): Promise<T> {
  labelStdout()
  return context.run({ ...context.getStore(), drop }, fn)
}

/** The label of the code running now, if any. */
export function currentLabel(): string | undefined {
  return context.getStore()?.label
}

/** `message` with the label in front, once (a line that starts with it already is left alone). */
export function labelled(message: string, label: string | undefined = currentLabel()): string {
  if (label === undefined || message.startsWith(`${label}: `)) return message
  return `${label}: ${message}`
}

/** Workflow commands whose message is a log line (the others, e.g. group, set-output, are left as they are). */
const MESSAGE_COMMAND = /^(::(?:debug|notice|warning|error)(?: [^:]*)?::)(.*)$/s

/** One line of stdout as it should appear in the current context; undefined: leave it out. */
export function contextLine(line: string, ctx: LogContext | undefined = context.getStore()): string | undefined {
  if (ctx === undefined || line === '') return line
  const command = MESSAGE_COMMAND.exec(line)
  if (command) return `${command[1] ?? ''}${labelled(command[2] ?? '', ctx.label)}`
  if (line.startsWith('::')) return line
  if (ctx.drop?.test(line)) return undefined
  return labelled(line, ctx.label)
}

type Write = typeof process.stdout.write
let wrapper: Write | undefined

/**
 * Puts a filter in front of process.stdout.write that applies the current
 * context to each line written (writes outside any context pass through
 * untouched). Installed again if something replaced stdout.write since (the
 * CLI's terminal takes stdout over, and gives it back when it closes).
 */
function labelStdout(stdout: NodeJS.WriteStream = process.stdout): void {
  if (wrapper !== undefined && stdout.write === wrapper) return
  const next = stdout.write.bind(stdout) as (chunk: string | Uint8Array, ...rest: unknown[]) => boolean
  const write = (chunk: string | Uint8Array, ...rest: unknown[]): boolean => {
    const ctx = context.getStore()
    if (ctx === undefined) return next(chunk, ...rest)
    const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8')
    const lines = text.split('\n').map(l => {
      const cr = l.endsWith('\r') ? '\r' : ''
      const shown = contextLine(cr === '' ? l : l.slice(0, -1), ctx)
      return shown === undefined ? undefined : `${shown}${cr}`
    })
    // A left-out line takes its newline with it.
    const kept = lines.flatMap((l, i) => (l === undefined ? [] : [i < lines.length - 1 ? `${l}\n` : l])).join('')
    if (kept === '') {
      const callback = rest.find(r => typeof r === 'function') as (() => void) | undefined
      if (callback) process.nextTick(callback)
      return true
    }
    return next(kept, ...(typeof chunk === 'string' ? rest : rest.filter(r => typeof r === 'function')))
  }
  wrapper = write as Write
  stdout.write = wrapper
}
