import { randomBytes, timingSafeEqual } from 'node:crypto'
import { createServer, type Server, type Socket } from 'node:net'

/**
 * A one-shot listener on 127.0.0.1 for streaming a generated build's output
 * straight to the action (`tar -c ... | nc 127.0.0.1 PORT` inside a
 * `--network=host` build) instead of through the build's exporter.
 *
 * Safety: it binds the loopback address only, on a random port; a
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
    server.listen(0, '127.0.0.1', () => resolve())
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
