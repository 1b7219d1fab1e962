// The process runner on real processes: short calls through @actions/exec
// (output read whole, quiet, stopped at their deadline), streaming calls
// through our own spawn wrapper.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'

import { afterAll, afterEach, expect, jest, test } from '@jest/globals'

import { runCommand } from '../src/builder/command.js'
import { Deadline } from '../src/builder/deadline.js'
import { CommandError } from '../src/errors.js'

const work = mkdtempSync(join(tmpdir(), 'bmc-command-'))
afterAll(() => rmSync(work, { recursive: true, force: true }))
afterEach(() => {
  jest.restoreAllMocks()
})

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

test('a short call returns its output whole and writes nothing itself', async () => {
  const written: string[] = []
  jest.spyOn(process.stdout, 'write').mockImplementation(chunk => {
    written.push(String(chunk))
    return true
  })
  const r = await runCommand('sh', ['-c', 'printf "one\\ntwo"; echo note >&2', 'ignored'])
  expect(r).toEqual({ stdout: 'one\ntwo', stderr: 'note\n' })
  expect(written).toEqual([])
})

test('arguments reach the command as they are, without a shell reading them', async () => {
  const r = await runCommand('printf', ['%s|', 'a b', '$HOME', '"q"', "it's"])
  expect(r.stdout).toBe(`a b|$HOME|"q"|it's|`)
})

test('a short call that fails is a CommandError with its exit code and stderr', async () => {
  const failed = runCommand('sh', ['-c', 'echo "no such builder" >&2; exit 3'])
  await expect(failed).rejects.toThrow(CommandError)
  await expect(failed).rejects.toMatchObject({ exitCode: 3, message: 'sh -c echo "no such builder" >&2; exit 3 failed (exit 3): no such builder' })
})

test('a command that cannot start is a CommandError', async () => {
  await expect(runCommand('/nonexistent/bmc-tool', ['version'])).rejects.toThrow(/^\/nonexistent\/bmc-tool version failed \(exit 127\): .*not found/)
})

test('a short call past its deadline is stopped, and its process is gone', async () => {
  const pidFile = join(work, 'short.pid')
  const started = Date.now()
  // The inner sh writes its process id and becomes sleep (same process).
  const call = runCommand('sh', ['-c', `echo $$ > ${pidFile}; exec sleep 30`], { deadline: new Deadline(500) })
  await expect(call).rejects.toThrow(/^sh -c echo .* failed \(exit none\): stopped: nothing happened for 0\.5 s/)
  expect(Date.now() - started).toBeLessThan(10_000)
  expect(alive(Number(readFileSync(pidFile, 'utf8')))).toBe(false)
})

test('output keeps a short call alive past its idle bound', async () => {
  const r = await runCommand('sh', ['-c', 'for i in 1 2 3 4 5; do echo $i; sleep 0.4; done'], { deadline: new Deadline(1500) })
  expect(r.stdout).toBe('1\n2\n3\n4\n5\n')
})

test('a streaming call reads stdin and hands stdout to its consumer', async () => {
  let got = ''
  await runCommand('tr', ['a-z', 'A-Z'], {
    stdin: Readable.from([Buffer.from('tar bytes')]),
    stdout: async out => {
      for await (const chunk of out) got += String(chunk)
    }
  })
  expect(got).toBe('TAR BYTES')
})

test('a streaming call past its deadline is stopped too', async () => {
  const pidFile = join(work, 'stream.pid')
  const lines: string[] = []
  const call = runCommand('sh', ['-c', `echo $$ > ${pidFile}; echo started >&2; exec sleep 30`], {
    onStderrLine: line => lines.push(line),
    deadline: new Deadline(500)
  })
  await expect(call).rejects.toThrow(/stopped: nothing happened for 0\.5 s/)
  expect(lines).toEqual(['started'])
  expect(alive(Number(readFileSync(pidFile, 'utf8')))).toBe(false)
})
