// The CLI through main(): --version, per-command --help, ls --json's shape,
// and the exit codes (exit-codes.ts) for success, usage errors and failures.
// No engine: the commands exercised fail or finish before any build.
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { afterAll, describe, expect, test } from '@jest/globals'

import { commandOptions, COMMANDS } from '../src/cli/args.js'
import { EXIT_CODES } from '../src/cli/exit-codes.js'
import { main } from '../src/cli/main.js'
import { LocalDirStore } from '../src/storage/local-dir.js'
import { REPO_ROOT } from '../test-support/action-runner.js'

const work = mkdtempSync(join(tmpdir(), 'bmc-cli-main-'))
afterAll(() => rmSync(work, { recursive: true, force: true }))

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

async function run(argv: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = fakeStream()
  const err = fakeStream()
  const code = await main(argv, { XDG_STATE_HOME: join(work, 'state'), ...env }, { stdout: out.stream, stderr: err.stream })
  return { code, stdout: out.text(), stderr: err.text() }
}

const packageVersion = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version

describe('--version and --help', () => {
  test('--version prints package.json version, exit 0', async () => {
    expect(packageVersion).toMatch(/^\d+\.\d+\.\d+/)
    expect(await run(['--version'])).toEqual({ code: 0, stdout: `${packageVersion}\n`, stderr: '' })
  })

  test('--help without a command: the commands, a pointer to per-command help, the exit codes', async () => {
    const r = await run(['--help'])
    expect(r.code).toBe(EXIT_CODES.ok)
    expect(r.stdout).toMatch(/^Usage: buildkit-mount-cache <command> \[options\]\n/)
    for (const c of COMMANDS) expect(r.stdout).toMatch(new RegExp(`^  ${c} +\\S`, 'm'))
    expect(r.stdout).toContain('Run `buildkit-mount-cache <command> --help` for the options of a command.')
    expect(r.stdout).toMatch(/^ {2}0 {2}success, also when the cache had trouble/m)
    expect(r.stdout).toMatch(/^ {2}1 {2}the command could not do its job/m)
    expect(r.stdout).toMatch(/^ {2}2 {2}usage error/m)
    expect(r.stdout).toContain('--version')
  })

  test.each(COMMANDS)('%s --help lists exactly the options it takes', async command => {
    const r = await run([command, '--help'])
    expect(r.code).toBe(0)
    expect(r.stdout.startsWith(`Usage: buildkit-mount-cache ${command} [options]\n`)).toBe(true)
    const listed = [...r.stdout.matchAll(/^ {2}(?:-\w, )?--([a-z-]+)/gm)].map(m => m[1]).filter(o => o !== 'help')
    expect(listed.sort()).toEqual(commandOptions(command).sort())
    expect(r.stdout).toMatch(/^Exit codes:$/m)
    // help with the command word says the same.
    expect((await run(['help', command])).stdout).toBe(r.stdout)
  })

  test('restore --help and save --help say where the state file goes by default', async () => {
    for (const command of ['restore', 'save']) {
      const r = await run([command, '--help'])
      expect(r.stdout).toContain('--state FILE')
      expect(r.stdout).toContain('$RUNNER_TEMP when set, else $XDG_STATE_HOME/buildkit-mount-cache')
    }
  })

  test('prune --help shows its own options only; action inputs besides the key prefix are not offered', async () => {
    const r = await run(['prune', '--help'])
    expect(r.stdout).toContain('--max-age AGE')
    expect(r.stdout).toContain('--key-prefix VALUE')
    expect(r.stdout).not.toContain('--mounts')
    expect(r.stdout).not.toContain('--state')
  })
})

describe('exit codes', () => {
  test.each([
    [['restore', '--frobnicate'], /^error: Unknown option '--frobnicate'\nRun buildkit-mount-cache restore --help for its options\.\n$/],
    [['ls', '--state', 'x.json'], /^error: --state is an option of restore and save only\nRun buildkit-mount-cache ls --help for its options\.\n$/],
    [[], /^error: a command is needed: restore, save, ls, prune\n/],
    [['prune'], /^error: prune needs --max-age and\/or --max-total\nRun buildkit-mount-cache prune --help for its options\.\n$/]
  ])('usage error %j: 2, the message and where help is', async (argv, message) => {
    const r = await run(argv)
    expect(r.code).toBe(EXIT_CODES.usage)
    expect(r.stdout).toBe('')
    expect(r.stderr).toMatch(message)
  })

  test('a bad input value is a usage error worded as its option; restore first removes an earlier state file', async () => {
    const state = join(work, 'stale-state.json')
    writeFileSync(state, '{"from": "an earlier job"}')
    const r = await run(['restore', '--state', state, '--build-arg', '=novalue', '--backend', `dir:${join(work, 'store')}`])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/^error: --build-arg: "=novalue" has no name: expected KEY=VALUE, or KEY to take its value from the environment/m)
    expect(r.stderr).toContain('Run buildkit-mount-cache restore --help for its options.')
    expect(existsSync(state)).toBe(false)
  })

  test('an unreadable state file is a usage error naming the file', async () => {
    const state = join(work, 'corrupt-state.json')
    writeFileSync(state, 'not json')
    const r = await run(['save', '--state', state, '--backend', `dir:${join(work, 'store')}`])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain(`error: state file ${state}: `)
  })

  test('ls on a store it cannot read: 1', async () => {
    const notADir = join(work, 'a-file')
    writeFileSync(notADir, '')
    const r = await run(['ls', '--backend', `dir:${notADir}`])
    expect(r.code).toBe(EXIT_CODES.failure)
    expect(r.stderr).toMatch(/^error: .*ENOTDIR/m)
  })

  test('ls of the GitHub cache: a usage error (it cannot be listed)', async () => {
    const r = await run(['ls', '--backend', 'github'])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/ls needs a dir: or s3:\/\/ backend/)
  })
})

describe('ls --json', () => {
  test('one document of the documented shape, every field present', async () => {
    const root = join(work, 'ls-store')
    const store = new LocalDirStore(root, { codec: 'none' })
    const archive = join(work, 'npm.tar')
    writeFileSync(archive, Buffer.alloc(2048))
    await store.save(archive, 'proj-npm-linux-amd64-abc-0123456789abcdef')
    await store.save(archive, 'other-npm-linux-amd64-abc-0123456789abcdef')
    const r = await run([
      'ls',
      '--key-prefix',
      'proj',
      '--backend',
      `dir:${root}`,
      '--mounts',
      'id=npm,target=/root/.npm',
      '--key-platform',
      'linux/amd64',
      '--json'
    ])
    expect(r.code).toBe(0)
    const doc = JSON.parse(r.stdout) as Record<string, unknown>
    expect(Object.keys(doc).sort()).toEqual(['backend', 'command', 'entries', 'total-bytes', 'warnings'])
    expect(doc).toMatchObject({ command: 'ls', backend: `dir:${root}`, warnings: [] })
    const entries = doc.entries as Record<string, unknown>[]
    expect(entries).toHaveLength(1)
    const [entry] = entries
    expect(Object.keys(entry ?? {}).sort()).toEqual(['compression', 'created', 'key', 'last-used', 'mount', 'size'])
    expect(entry).toMatchObject({ mount: 'npm', key: 'proj-npm-linux-amd64-abc-0123456789abcdef', compression: 'none' })
    expect(entry?.size).toBe(doc['total-bytes'])
    expect(entry?.size).toBeGreaterThan(0)
    expect(new Date(String(entry?.created)).toISOString()).toBe(entry?.created)
    expect(new Date(String(entry?.['last-used'])).toISOString()).toBe(entry?.['last-used'])

    // docs/cli.md shows the same document: the same fields at each level.
    const cliDoc = readFileSync(join(REPO_ROOT, 'docs/cli.md'), 'utf8')
    const shown = /## JSON output[\s\S]*?```json\n([\s\S]*?)\n```/.exec(cliDoc)?.[1]
    expect(shown).toBeDefined()
    const documented = JSON.parse(shown ?? '') as Record<string, unknown>
    expect(Object.keys(documented).sort()).toEqual(Object.keys(doc).sort())
    expect(Object.keys((documented.entries as Record<string, unknown>[])[0] ?? {}).sort()).toEqual(Object.keys(entry ?? {}).sort())
  })
})
