import { randomBytes, timingSafeEqual } from 'node:crypto'
import { createServer, type Server, type Socket } from 'node:net'

/**
 * A one-shot listener on one address of the runner (127.0.0.1, or the
 * gateway of a builder container's network) for streaming a generated build's output
 * a generated build's stream to or from the action (`nc HOST PORT` in the
 * build's RUN) instead of through the build's context or exporter.
 *
 * Safety: it binds that one address only (never all interfaces), on a
 * random port; a
 * connection must send the one-time token (48 hex digits and a newline)
 * within a few seconds before anything it sends is used; the first valid
 * connection is the only one ever accepted, and the server stops listening
 * right then. Anything else is dropped unread.
 */
export interface OneShotListener {
  port: number
  token: string
  /** Resolves with the accepted socket, positioned after the token line. */
  accepted: Promise<Socket>
  /** Connections dropped for a wrong or missing token. */
  rejected(): number
  /** Stops listening; `accepted` rejects if nothing was accepted yet. */
  close(reason?: string): void
}

export interface ListenOptions {
  /** The one address to bind (default 127.0.0.1): where the build's RUN reaches the runner. Never 0.0.0.0. */
  host?: string
  /** Time a connection has to present the token. */
  tokenTimeoutMs?: number
  /** An accepted connection idle this long is destroyed; 0: never (the action's side paces the stream). */
  idleTimeoutMs?: number
  /**
   * Keep sending after the peer has finished sending: the inject build's nc
   * sends the token, finishes its side, and then reads the whole stream.
   */
  sendAfterPeerEnds?: boolean
}

const TOKEN_BYTES = 24

export async function listenOnce(options: ListenOptions = {}): Promise<OneShotListener> {
  if (options.host !== undefined && !/^(127|10|172|192)\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(options.host)) {
    throw new Error(`the listener binds one IPv4 address of this machine, not ${JSON.stringify(options.host)}`)
  }
  const token = randomBytes(TOKEN_BYTES).toString('hex')
  const expected = Buffer.from(`${token}\n`)
  let rejected = 0
  let done = false
  let resolveAccepted!: (s: Socket) => void
  let rejectAccepted!: (e: Error) => void
  const accepted = new Promise<Socket>((resolve, reject) => {
    resolveAccepted = resolve
    rejectAccepted = reject
  })
  accepted.catch(() => undefined)

  const server: Server = createServer({ allowHalfOpen: options.sendAfterPeerEnds ?? false }, socket => {
    if (done) {
      socket.destroy()
      return
    }
    let head = Buffer.alloc(0)
    const drop = (): void => {
      rejected++
      socket.destroy()
    }
    socket.setTimeout(options.tokenTimeoutMs ?? 10_000, drop)
    socket.on('error', () => undefined)
    const onData = (chunk: Buffer): void => {
      head = Buffer.concat([head, chunk])
      if (head.length < expected.length) {
        if (!expected.subarray(0, head.length).equals(head)) drop()
        return
      }
      socket.off('data', onData)
      socket.pause()
      if (done || !timingSafeEqual(head.subarray(0, expected.length), expected)) {
        drop()
        return
      }
      done = true
      server.close()
      socket.setTimeout(options.idleTimeoutMs ?? 300_000, () => socket.destroy(new Error('loopback stream idle for too long')))
      const rest = head.subarray(expected.length)
      if (rest.length > 0) socket.unshift(rest)
      resolveAccepted(socket)
    }
    socket.on('data', onData)
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, options.host ?? '127.0.0.1', () => resolve())
  })
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('loopback listener has no port')
  return {
    port: address.port,
    token,
    accepted,
    rejected: () => rejected,
    close: (reason = 'the build ended without connecting') => {
      if (!done) {
        done = true
        rejectAccepted(new Error(reason))
      }
      server.close()
    }
  }
}
