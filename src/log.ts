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

export const log: Logger = {
  info: m => current.info(m),
  notice: m => current.notice(m),
  warning: m => current.warning(m),
  debug: m => current.debug(m),
  group: (name, fn) => current.group(name, fn)
}

export function setLogger(logger: Logger): void {
  current = logger
}
