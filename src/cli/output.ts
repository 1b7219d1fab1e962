import type { Logger } from '../log.js'

/**
 * The CLI's terminal: results on stdout, log lines as plain text. The
 * @actions/* libraries print GitHub workflow commands on stdout even here
 * (`::debug::…` for every hashed key file, `::warning::…`), so stdout is taken
 * over: those are rendered as plain lines, and in --json mode everything but
 * the result moves to stderr, so stdout stays one JSON document.
 */
export interface Output {
  /** The command's result (a JSON document, a listing): always stdout. */
  result(text: string): void
  info(line: string): void
  notice(line: string): void
  warning(line: string): void
  error(line: string): void
  debug(line: string): void
  /** Warnings so far, for the JSON result. */
  readonly warnings: string[]
  /** Gives stdout back and calls `done` once everything written has been flushed. */
  close(done: () => void): void
}

export interface OutputOptions {
  json: boolean
  verbose: boolean
  stdout?: NodeJS.WriteStream
  stderr?: NodeJS.WriteStream
}

type WriteCallback = (error?: Error | null) => void

/** `::name key=value::message` → name and unescaped message (undefined for a plain line). */
export function parseWorkflowCommand(line: string): { name: string; message: string } | undefined {
  const m = /^::([a-z-]+)(?: [^:]*)?::(.*)$/s.exec(line)
  if (!m) return undefined
  const message = (m[2] ?? '').replace(/%0D/g, '\r').replace(/%0A/g, '\n').replace(/%25/g, '%')
  return { name: m[1] ?? '', message }
}

export function takeOverStdout(options: OutputOptions): Output {
  const stdout = options.stdout ?? process.stdout
  const stderr = options.stderr ?? process.stderr
  const original = stdout.write.bind(stdout) as (chunk: string, cb?: WriteCallback) => boolean
  const warnings: string[] = []
  const toErr = (line: string): void => {
    stderr.write(`${line}\n`)
  }
  const out: Output = {
    result: text => {
      original(text.endsWith('\n') ? text : `${text}\n`)
    },
    info: line => {
      if (options.json) toErr(line)
      else original(`${line}\n`)
    },
    notice: line => toErr(`notice: ${line}`),
    warning: line => {
      warnings.push(line)
      toErr(`warning: ${line}`)
    },
    error: line => toErr(`error: ${line}`),
    debug: line => {
      if (options.verbose) toErr(`debug: ${line}`)
    },
    warnings,
    close: done => {
      if (partial !== '') render(partial)
      partial = ''
      stdout.write = original as typeof stdout.write
      original('', () => done())
    }
  }

  const render = (line: string): void => {
    const command = parseWorkflowCommand(line)
    if (!command) return out.info(line)
    switch (command.name) {
      case 'debug':
        return out.debug(command.message)
      case 'notice':
        return out.notice(command.message)
      case 'warning':
        return out.warning(command.message)
      case 'error':
        return out.error(command.message)
      case 'group':
        return out.info(`==> ${command.message}`)
      case 'endgroup':
      case 'add-mask':
      case 'stop-commands':
      case 'echo':
        return
      default:
        return out.info(command.message)
    }
  }

  let partial = ''
  const intercept = (chunk: string | Uint8Array, encoding?: BufferEncoding | WriteCallback, cb?: WriteCallback): boolean => {
    const callback = typeof encoding === 'function' ? encoding : cb
    const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8')
    const lines = (partial + text).split('\n')
    partial = lines.pop() ?? ''
    for (const line of lines) render(line.replace(/\r$/, ''))
    if (callback) process.nextTick(callback)
    return true
  }
  stdout.write = intercept as typeof stdout.write
  return out
}

/** The plain terminal logger the CLI installs with setLogger. */
export function terminalLogger(output: Output): Logger {
  return {
    info: m => output.info(m),
    notice: m => output.notice(m),
    warning: m => output.warning(m),
    debug: m => output.debug(m),
    group: async (name, fn) => {
      output.info(`==> ${name}`)
      return fn()
    }
  }
}
