import type { CommandRunner } from './command.js'
import type { Engine } from './engine.js'
import { LOOPBACK, type StreamReach } from './route.js'

/**
 * Where a generated RUN on this engine's builder can reach a listener of
 * the action: today always the runner's 127.0.0.1 with host networking
 * (docker driver, classic client).
 */
export async function findReach(_run: CommandRunner, _engine: Engine): Promise<StreamReach | undefined> {
  return LOOPBACK
}
