import { randomUUID } from 'node:crypto'
import { Writable, type Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'

import type { CommandRunner } from './command.js'
import { NONCE_ARG } from './dockerfile.js'
import { InputError } from '../errors.js'
import { Deadline, shortCallMs } from './deadline.js'

/** `buildx`: `docker buildx build` (GitHub runners); `docker`: `DOCKER_BUILDKIT=1 docker build`. */
export type ClientKind = 'buildx' | 'docker'
export type ClientChoice = 'auto' | ClientKind

export interface Engine {
  client: ClientKind
  /** buildx builder name; undefined = the current builder. */
  builder?: string
  /** The docker CLI to run. */
  docker: string
}

/**
 * Picks the client: buildx when `docker buildx version` works, otherwise the
 * classic builder with DOCKER_BUILDKIT=1. A forced `buildx` that is missing,
 * or a builder name without buildx, is an input error.
 */
export async function resolveEngine(run: CommandRunner, choice: ClientChoice, builder: string | undefined, docker = 'docker'): Promise<Engine> {
  let client: ClientKind
  if (choice === 'docker') {
    client = 'docker'
  } else {
    const hasBuildx = await run(docker, ['buildx', 'version'], { deadline: new Deadline(shortCallMs()) }).then(
      () => true,
      () => false
    )
    if (!hasBuildx && choice === 'buildx') {
      throw new InputError('client', '"buildx" was requested but `docker buildx version` fails: install the buildx plugin or use "auto"')
    }
    client = hasBuildx ? 'buildx' : 'docker'
  }
  if (builder && client !== 'buildx') {
    throw new InputError(
      'builder',
      `a builder ("${builder}") needs buildx, but the ${choice === 'docker' ? 'requested' : 'detected'} client is classic docker build`
    )
  }
  return builder ? { client, builder, docker } : { client, docker }
}

/** The generated build's network: none (nothing to reach), host (127.0.0.1 is the runner's), default (the builder's own, e.g. its bridge). */
export type BuildNetwork = 'none' | 'host' | 'default'

export interface BuildInvocation {
  command: string
  args: string[]
  env: NodeJS.ProcessEnv
}

/**
 * Argv for one generated build: the context (with its Dockerfile) is a tar on
 * stdin, the result a tar on stdout. No network: the builds only copy files.
 * The nonce build argument makes each build unique so no step is skipped as
 * cached.
 */
export function buildInvocation(
  engine: Engine,
  nonce: string = randomUUID(),
  baseEnv: NodeJS.ProcessEnv = process.env,
  buildArgs: Record<string, string> = {},
  network: BuildNetwork = 'none',
  contextDir?: string
): BuildInvocation {
  const args = Object.entries(buildArgs).flatMap(([k, v]) => ['--build-arg', `${k}=${v}`])
  const common = [
    '--progress=plain',
    `--network=${network}`,
    '--build-arg',
    `${NONCE_ARG}=${nonce}`,
    ...args,
    '--output',
    'type=tar,dest=-',
    contextDir ?? '-'
  ]
  if (engine.client === 'buildx') {
    const builder = engine.builder ? ['--builder', engine.builder] : []
    // Asks for the entitlement host networking needs: the docker driver grants it, a docker-container
    // builder only when started with --allow-insecure-entitlement network.host (else the build is refused: fallback).
    const allow = network === 'host' ? ['--allow', 'network.host'] : []
    return { command: engine.docker, args: ['buildx', 'build', ...builder, '--provenance=false', ...allow, ...common], env: baseEnv }
  }
  return { command: engine.docker, args: ['build', ...common], env: { ...baseEnv, DOCKER_BUILDKIT: '1' } }
}

export interface BuildRun {
  /** The build context: a tar with the Dockerfile for stdin, or a directory holding the Dockerfile. */
  context: Readable | { dir: string }
  /** Consumes the build's result (a tar on stdout); without it the result (a marker file) is drained. */
  output?: (tar: Readable) => Promise<unknown>
  onLine?: (line: string) => void
  buildArgs?: Record<string, string>
  /** Not `none` only for a stream to the action's own listener (stream-transport.ts). */
  network?: BuildNetwork
  /** Bounds the build (deadline.ts: buildDeadline). */
  deadline: Deadline
}

/** Runs one generated build. */
export async function runBuild(run: CommandRunner, engine: Engine, build: BuildRun): Promise<void> {
  const dir = 'dir' in build.context ? build.context.dir : undefined
  const inv = buildInvocation(engine, undefined, undefined, build.buildArgs ?? {}, build.network ?? 'none', dir)
  await run(inv.command, inv.args, {
    env: inv.env,
    ...(dir === undefined ? { stdin: build.context as Readable } : {}),
    stdout: build.output ?? (async tar => pipeline(tar, new Writable({ write: (_chunk, _enc, cb) => cb() }))),
    ...(build.onLine ? { onStderrLine: build.onLine } : {}),
    deadline: build.deadline
  }).finally(() => build.deadline.clear())
}
