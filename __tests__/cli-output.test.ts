// The CLI's terminal: library workflow commands rendered as plain lines,
// stdout kept for the result in --json mode, and progress lines for long
// transfers only.
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { Writable } from 'node:stream'

import { describe, expect, test } from '@jest/globals'
import * as core from '@actions/core'

import { takeOverStdout, terminalLogger } from '../src/cli/output.js'
import { actionsLogger, log, setLogger, withLabel } from '../src/log.js'
import { progressLine, progressMeter } from '../src/storage/progress.js'

function fakeStream(): { stream: NodeJS.WriteStream; text: () => string } {
  let text = ''
  const stream = {
    write: (chunk: string | Uint8Array, a?: unknown, b?: unknown) => {
      text += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString()
      const cb = typeof a === 'function' ? a : b
      if (typeof cb === 'function') (cb as () => void)()
      return true
    }
  }
  return { stream: stream as unknown as NodeJS.WriteStream, text: () => text }
}

describe('takeOverStdout', () => {
  test('workflow commands from libraries become plain lines; debug only when verbose', async () => {
    const out = fakeStream()
    const err = fakeStream()
    const o = takeOverStdout({ json: false, verbose: false, stdout: out.stream, stderr: err.stream })
    out.stream.write('::debug::hashing /w/Dockerfile\n')
    out.stream.write('Cache mounts:\nid  tar')
    out.stream.write('get\n::warning::No cache mounts%0Ato persist\n::group::Step\n::endgroup::\n')
    o.result('{"x":1}')
    await new Promise<void>(resolve => o.close(resolve))
    expect(out.text()).toBe('Cache mounts:\nid  target\n==> Step\n{"x":1}\n')
    expect(err.text()).toBe('warning: No cache mounts\nto persist\n')
    expect(o.warnings).toEqual(['No cache mounts\nto persist'])
  })

  test('--json: only the result on stdout, everything else on stderr', async () => {
    const out = fakeStream()
    const err = fakeStream()
    const o = takeOverStdout({ json: true, verbose: true, stdout: out.stream, stderr: err.stream })
    out.stream.write('plain library line\n::debug::d\n')
    o.info('info line')
    o.result('{"ok":true}')
    await new Promise<void>(resolve => o.close(resolve))
    expect(out.text()).toBe('{"ok":true}\n')
    expect(err.text()).toBe('plain library line\ndebug: d\ninfo line\n')
  })
})

describe('labelled lines on the terminal', () => {
  test("inside a mount's context, the library's lines (from its timers too) and ours carry the mount's id", async () => {
    const realWrite = process.stdout.write
    const captured = fakeStream()
    process.stdout.write = captured.stream.write as typeof process.stdout.write
    const err = fakeStream()
    const o = takeOverStdout({ json: false, verbose: false, stdout: process.stdout, stderr: err.stream })
    setLogger(terminalLogger(o))
    try {
      await withLabel('npm', async () => {
        await new Promise<void>(resolve =>
          setTimeout(() => {
            core.info('Received 10 of 20 (50.0%), 1.0 MBs/sec')
            resolve()
          }, 1)
        )
        core.warning('Failed to restore: reset')
        log.info('restored k (exact, 20 B, 3 entries, 0.1 s)')
      })
      core.info('Client: docker buildx build')
      await new Promise<void>(resolve => o.close(resolve))
    } finally {
      setLogger(actionsLogger)
      process.stdout.write = realWrite
    }
    expect(captured.text()).toBe(
      'npm: Received 10 of 20 (50.0%), 1.0 MBs/sec\nnpm: restored k (exact, 20 B, 3 entries, 0.1 s)\nClient: docker buildx build\n'
    )
    expect(err.text()).toBe('warning: npm: Failed to restore: reset\n')
  })
})

describe('progress', () => {
  test('the line', () => {
    expect(progressLine('npm: uploading', 120 * 1024 ** 2, 500 * 1024 ** 2, 3000)).toBe('npm: uploading 120.0 MiB of 500.0 MiB (24%), 40.0 MiB/s')
    expect(progressLine('npm: downloading', 2048, undefined, 0)).toBe('npm: downloading 2.0 KiB')
  })

  test('quiet for a quick transfer, one line per interval for a long one', async () => {
    let t = 0
    const lines: string[] = []
    const meter = progressMeter({ label: 'x: writing', total: 4096, intervalMs: 1000, now: () => t, emit: l => lines.push(l) })
    const chunks = [0, 500, 900, 1500, 1600, 2600].map(at => ({ at, data: Buffer.alloc(512) }))
    const source = Readable.from(
      (async function* () {
        for (const c of chunks) {
          t = c.at
          yield c.data
        }
      })()
    )
    await pipeline(source, meter, new Writable({ write: (_c, _e, cb) => cb() }))
    expect(lines).toEqual(['x: writing 2.0 KiB of 4.0 KiB (50%), 1.3 KiB/s', 'x: writing 3.0 KiB of 4.0 KiB (75%), 1.2 KiB/s'])
  })
})
