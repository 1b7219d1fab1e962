import { connect, type Socket } from 'node:net'
import { text } from 'node:stream/consumers'

import { expect, test } from '@jest/globals'

import { listenOnce } from '../src/builder/listener.js'

function send(port: number, data: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => {
      s.write(data)
      resolve(s)
    })
    s.on('error', reject)
  })
}

const closed = (s: Socket): Promise<void> => new Promise(resolve => (s.destroyed ? resolve() : s.once('close', () => resolve())))

test('only a connection presenting the token gets through, and only once', async () => {
  const listener = await listenOnce({ tokenTimeoutMs: 2000 })
  const stray = await send(listener.port, 'not-the-token\nEVIL DATA')
  await closed(stray)
  const early = await send(listener.port, `${listener.token.slice(0, 10)}X`)
  await closed(early)
  const good = await send(listener.port, `${listener.token}\npayload`)
  const socket = await listener.accepted
  good.end()
  expect(await text(socket)).toBe('payload')
  expect(listener.rejected()).toBe(2)
  // The server stopped listening after the first valid connection.
  await expect(send(listener.port, `${listener.token}\nagain`)).rejects.toThrow(/ECONNREFUSED/)
  listener.close()
})

test('a connection that never sends the token times out; close() rejects the wait', async () => {
  const listener = await listenOnce({ tokenTimeoutMs: 200 })
  const silent = await send(listener.port, '')
  await closed(silent)
  expect(listener.rejected()).toBe(1)
  listener.close('no build')
  await expect(listener.accepted).rejects.toThrow('no build')
})

test('binds the loopback address only', async () => {
  const listener = await listenOnce()
  await expect(
    new Promise((resolve, reject) => {
      const s = connect({ port: listener.port, host: '::1' }, () => resolve(s))
      s.on('error', reject)
    })
  ).rejects.toThrow()
  listener.close()
})

test('inject direction: a stray connection reads nothing, the token holder reads everything after finishing its side', async () => {
  const listener = await listenOnce({ tokenTimeoutMs: 2000, idleTimeoutMs: 0, sendAfterPeerEnds: true })
  const received: Buffer[] = []
  const stray = await send(listener.port, 'guess\n')
  stray.on('data', (c: Buffer) => received.push(c))
  await closed(stray)
  // As the build's `echo TOKEN | nc`: the token, then the end of its side.
  const good = await send(listener.port, `${listener.token}\n`)
  good.end()
  const socket = await listener.accepted
  const reading = text(good)
  await new Promise(resolve => setTimeout(resolve, 50))
  socket.end('the stream')
  expect(await reading).toBe('the stream')
  expect(Buffer.concat(received).length).toBe(0)
  expect(listener.rejected()).toBe(1)
  listener.close()
})
