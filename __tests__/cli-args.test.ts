// The CLI's command line: options = the action inputs (mapped to INPUT_*),
// usage errors (exit 2), backend specs, and the rendering of the workflow
// commands the @actions/* libraries print.
import { homedir } from 'node:os'
import { join } from 'node:path'

import { describe, expect, test } from '@jest/globals'

import { cliInputs, defaultBackend, parseCli, UsageError, type CliOptions } from '../src/cli/args.js'
import { defaultStatePath } from '../src/cli/state-path.js'
import { groupEntries } from '../src/cli/ls-command.js'
import { asOption } from '../src/cli/main.js'
import { parseWorkflowCommand } from '../src/cli/output.js'
import { InputError } from '../src/errors.js'
import { LocalDirStore } from '../src/storage/local-dir.js'
import type { StoredEntry } from '../src/storage/managed.js'
import { deferredStore, openStore, parseBackend } from '../src/storage/select.js'

const options = (argv: string[], env: NodeJS.ProcessEnv = {}): CliOptions => {
  const parsed = parseCli(argv, env, '/work/project')
  if (parsed.kind !== 'run') throw new Error(`unexpected ${parsed.kind}`)
  return parsed.options
}

describe('parseCli', () => {
  test('every action input is an option; list inputs repeat', () => {
    const o = options([
      'restore',
      '--mounts',
      'id=npm,target=/root/.npm',
      '--mounts=id=apt,target=/var/cache/apt,sharing=locked',
      '--dockerfile',
      'Dockerfile',
      '--dockerfile',
      'docker/Dockerfile.ci',
      '--build-arg',
      'A=1',
      '--build-arg',
      'B=x=y',
      '--platforms',
      'linux/amd64',
      '--platforms',
      'linux/arm64',
      '--key-files',
      'package-lock.json',
      '--key-files',
      '**/go.sum',
      '--key-prefix',
      'proj',
      '--builder',
      'b1',
      '--utility-image',
      'busybox:1.36',
      '--client',
      'buildx',
      '--platform',
      'linux/arm64',
      '--max-size',
      '2G'
    ])
    expect(o.command).toBe('restore')
    expect(o.inputs).toEqual({
      mounts: 'id=npm,target=/root/.npm\nid=apt,target=/var/cache/apt,sharing=locked',
      dockerfile: 'Dockerfile\ndocker/Dockerfile.ci',
      'build-args': 'A=1\nB=x=y',
      platforms: 'linux/amd64,linux/arm64',
      'key-files': 'package-lock.json\n**/go.sum',
      'key-prefix': 'proj',
      builder: 'b1',
      'utility-image': 'busybox:1.36',
      client: 'buildx',
      platform: 'linux/arm64',
      'max-size': '2G'
    })
    expect(o.state).toBe(defaultStatePath({}, '/work/project', 'proj'))
    expect(o.json).toBe(false)
  })

  test('the input reader: options, else action.yml defaults; nothing from the environment', () => {
    process.env['INPUT_MOUNTS'] = 'id=leak,target=/leak'
    try {
      const read = cliInputs(options(['save', '--key-files', 'a.lock', '--build-arg', 'A=1', '--backend', 'dir:/x']))
      expect(read('key-files')).toBe('a.lock')
      expect(read('build-args')).toBe('A=1')
      expect(read('mounts')).toBe('')
      expect(read('key-prefix')).toBe('buildkit-mount-cache')
      expect(read('utility-image')).toBe('ghcr.io/containerd/busybox:1.36')
      expect(read('save')).toBe('true')
      expect(read('state')).toBe('')
      expect(read('backend')).toBe('dir:/x')
    } finally {
      delete process.env['INPUT_MOUNTS']
    }
  })

  test('backend default: the user cache dir, the Actions cache inside Actions', () => {
    expect(options(['ls']).backend).toBe('dir:~/.cache/buildkit-mount-cache')
    expect(options(['ls'], { XDG_CACHE_HOME: '/var/cache/me' }).backend).toBe('dir:/var/cache/me/buildkit-mount-cache')
    expect(options(['ls'], { GITHUB_ACTIONS: 'true' }).backend).toBe('github')
    expect(defaultBackend({})).toBe('dir:~/.cache/buildkit-mount-cache')
  })

  test('prune limits', () => {
    const o = options(['prune', '--max-age', '7d', '--max-total', '5G', '--dry-run', '--json'])
    expect(o.maxAgeMs).toBe(7 * 86_400_000)
    expect(o.maxTotalBytes).toBe(5 * 1024 ** 3)
    expect(o.dryRun).toBe(true)
    expect(o.json).toBe(true)
  })

  test('help and version', () => {
    expect(parseCli(['--help'])).toEqual({ kind: 'help' })
    expect(parseCli(['help'])).toEqual({ kind: 'help' })
    expect(parseCli(['save', '-h'])).toEqual({ kind: 'help', command: 'save' })
    expect(parseCli(['help', 'prune'])).toEqual({ kind: 'help', command: 'prune' })
    expect(parseCli(['--version'])).toEqual({ kind: 'version' })
    expect(parseCli(['restore', '--version'])).toEqual({ kind: 'version' })
  })

  test('the state file: --state as given, else outside the working directory, named from the key prefix and the directory', () => {
    expect(options(['restore', '--state', 'here.json']).state).toBe('here.json')
    const home = options(['restore']).state
    expect(home).toMatch(/^\/.*\/\.local\/state\/buildkit-mount-cache\/buildkit-mount-cache-state-[0-9a-f]{16}\.json$/)
    expect(home.startsWith('/work/project/')).toBe(false)
    expect(options(['save'], { XDG_STATE_HOME: '/var/state' }).state).toMatch(
      /^\/var\/state\/buildkit-mount-cache\/buildkit-mount-cache-state-[0-9a-f]{16}\.json$/
    )
    // Inside a job, RUNNER_TEMP (removed by the runner after the job).
    const job = options(['restore'], { RUNNER_TEMP: '/runner/_temp' }).state
    expect(job).toMatch(/^\/runner\/_temp\/buildkit-mount-cache-state-[0-9a-f]{16}\.json$/)
    // restore and save of one job find the same file; another prefix or directory another one.
    expect(options(['save'], { RUNNER_TEMP: '/runner/_temp' }).state).toBe(job)
    expect(options(['restore', '--key-prefix', 'buildkit-mount-cache'], { RUNNER_TEMP: '/runner/_temp' }).state).toBe(job)
    expect(options(['restore', '--key-prefix', 'other'], { RUNNER_TEMP: '/runner/_temp' }).state).not.toBe(job)
    expect(defaultStatePath({ RUNNER_TEMP: '/runner/_temp' }, '/work/other', 'buildkit-mount-cache')).not.toBe(job)
  })

  test.each([
    [[], /a command is needed/],
    [['fetch'], /unknown command "fetch"/],
    [['restore', '--nope'], /Unknown option '--nope'/],
    [['restore', 'extra'], /unexpected argument "extra"/],
    [['restore', '--key-prefix'], /argument missing/],
    [['restore', '--max-age', '7d'], /--max-age is an option of prune only/],
    [['ls', '--state', 'x.json'], /--state is an option of restore and save only/],
    [['prune', '--max-age', '1d', '--mounts', 'id=x,target=/x'], /--mounts is an option of restore, save and ls only/],
    [['ls', '--dry-run'], /--dry-run is an option of prune only/],
    [['help', 'fetch'], /unknown command "fetch"/],
    [['prune'], /prune needs --max-age and\/or --max-total/],
    [['prune', '--max-age', '7 days'], /--max-age must be a duration/],
    [['prune', '--max-total', 'lots'], /--max-total must be a size/],
    [['restore', '--save', 'false'], /Unknown option '--save'/]
  ])('usage error: %j', (argv, message) => {
    expect(() => parseCli(argv, {})).toThrow(UsageError)
    expect(() => parseCli(argv, {})).toThrow(message)
  })
})

describe('asOption', () => {
  test('input errors are worded as options', () => {
    expect(asOption(new InputError('build-args', '"x" is not KEY=VALUE'))).toBe('--build-arg: "x" is not KEY=VALUE')
    expect(asOption(new InputError('mounts line 2', 'id "a b" is not valid'))).toBe('--mounts (line 2): id "a b" is not valid')
    expect(asOption(new InputError('backend', 'bad'))).toBe('--backend: bad')
    expect(asOption(new Error('plain'))).toBe('plain')
  })
})

describe('parseBackend', () => {
  test('github', () => {
    expect(parseBackend('')).toEqual({ kind: 'github' })
    expect(parseBackend(' github ')).toEqual({ kind: 'github' })
  })

  test('dir', () => {
    expect(parseBackend('dir:/srv/cache')).toEqual({ kind: 'dir', path: '/srv/cache' })
    expect(parseBackend('dir:~/.cache/bmc', '/home/me')).toEqual({ kind: 'dir', path: '/home/me/.cache/bmc' })
    expect(parseBackend('dir:~')).toEqual({ kind: 'dir', path: homedir() })
    expect(parseBackend('dir:rel/dir')).toEqual({ kind: 'dir', path: join(process.cwd(), 'rel/dir') })
    expect(parseBackend('dir:/x?compression=gzip')).toEqual({ kind: 'dir', path: '/x', codec: 'gzip' })
  })

  test('s3', () => {
    expect(parseBackend('s3://bucket')).toEqual({ kind: 's3', bucket: 'bucket', prefix: '' })
    expect(parseBackend('s3://bucket/ci/cache/')).toEqual({ kind: 's3', bucket: 'bucket', prefix: 'ci/cache' })
    expect(parseBackend('s3://b-1/p?endpoint=http://127.0.0.1:9000&region=eu-west-1&part-size=8M&compression=zstd')).toEqual({
      kind: 's3',
      bucket: 'b-1',
      prefix: 'p',
      endpoint: 'http://127.0.0.1:9000',
      region: 'eu-west-1',
      partSize: 8 * 1024 * 1024,
      codec: 'zstd'
    })
  })

  test.each([
    ['ftp://x', /must be github, dir:\/path or s3:\/\/bucket\/prefix/],
    ['dir:', /dir: needs a path/],
    ['dir:/x?endpoint=y', /unknown option "endpoint"/],
    ['s3://', /is not a bucket name/],
    ['s3://bkt/p?part-size=1M', /part-size must be at least 5M/],
    ['s3://bkt/p?endpoint=127.0.0.1:9000', /endpoint must be an http\(s\) URL/],
    ['s3://bkt/p?compression=xz', /compression must be one of zstd, gzip/]
  ])('%s is an input error naming backend', (spec, message) => {
    expect(() => parseBackend(spec)).toThrow(InputError)
    expect(() => parseBackend(spec)).toThrow(/^Input "backend": /)
    expect(() => parseBackend(spec)).toThrow(message)
  })
})

describe('parseWorkflowCommand', () => {
  test('library output is recognised and unescaped', () => {
    expect(parseWorkflowCommand('::debug::/w/Dockerfile')).toEqual({ name: 'debug', message: '/w/Dockerfile' })
    expect(parseWorkflowCommand('::warning file=a,line=1::two%0Alines 100%25')).toEqual({ name: 'warning', message: 'two\nlines 100%' })
    expect(parseWorkflowCommand('::endgroup::')).toEqual({ name: 'endgroup', message: '' })
    expect(parseWorkflowCommand('plain line with :: inside')).toBeUndefined()
  })
})

describe('openStore / deferredStore', () => {
  test('a spec opens its store; a bad one fails only when the deferred store is first used', async () => {
    expect(openStore('dir:/tmp/x')).toBeInstanceOf(LocalDirStore)
    let asked = 0
    const store = deferredStore(() => {
      asked++
      return 'ftp://nowhere'
    })
    expect(asked).toBe(0)
    expect(() => store.available()).toThrow(/^Input "backend": must be github/)
    await expect(store.exists('/a.tar', 'k')).rejects.toThrow(InputError)
  })
})

describe('groupEntries (ls)', () => {
  const e = (key: string, t: number): StoredEntry => ({ key, size: 1, created: new Date(t), lastUsed: new Date(t) })

  test('per mount family, newest first; the rest under null', () => {
    const entries = [
      e('p-npm-linux-amd64-h1-a', 1),
      e('p-npm-cache-linux-amd64-h1-b', 2),
      e('p-npm-linux-amd64-h2-c', 3),
      e('p-apt-linux-amd64-h1-d', 4)
    ]
    const groups = groupEntries(entries, [
      { id: 'npm', family: 'p-npm-linux-amd64-' },
      { id: 'apt', family: 'p-apt-linux-amd64-' },
      { id: 'pip', family: 'p-pip-linux-amd64-' }
    ])
    expect(groups.map(g => [g.id, g.entries.map(x => x.key)])).toEqual([
      ['npm', ['p-npm-linux-amd64-h2-c', 'p-npm-linux-amd64-h1-a']],
      ['apt', ['p-apt-linux-amd64-h1-d']],
      ['pip', []],
      [null, ['p-npm-cache-linux-amd64-h1-b']]
    ])
  })

  test('no mounts named: one group with everything', () => {
    expect(groupEntries([e('k-1', 1)], []).map(g => [g.id, g.entries.length])).toEqual([[null, 1]])
  })
})
