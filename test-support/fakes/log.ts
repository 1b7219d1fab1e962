import { actionsLogger, setLogger, type Logger } from '../../src/log.js'

export type Level = 'info' | 'notice' | 'warning' | 'debug'

export interface Line {
  level: Level
  message: string
}

/** A Logger keeping every line; groups run their body in place. */
export class CapturingLogger implements Logger {
  readonly lines: Line[] = []
  readonly groups: string[] = []
  info(message: string): void {
    this.lines.push({ level: 'info', message })
  }
  notice(message: string): void {
    this.lines.push({ level: 'notice', message })
  }
  warning(message: string): void {
    this.lines.push({ level: 'warning', message })
  }
  debug(message: string): void {
    this.lines.push({ level: 'debug', message })
  }
  async group<T>(name: string, fn: () => Promise<T>): Promise<T> {
    this.groups.push(name)
    return fn()
  }
  /** The messages of one level. */
  of(level: Level): string[] {
    return this.lines.filter(l => l.level === level).map(l => l.message)
  }
  get warnings(): string[] {
    return this.of('warning')
  }
  clear(): void {
    this.lines.length = 0
    this.groups.length = 0
  }
}

/** Installs a fresh capturing logger; call the returned function to put the actions logger back. */
export function captureLog(): { logger: CapturingLogger; restore: () => void } {
  const logger = new CapturingLogger()
  setLogger(logger)
  return { logger, restore: () => setLogger(actionsLogger) }
}
