import { posix } from 'node:path'

import * as core from '@actions/core'

import type { ClientChoice } from '../builder/engine.js'
import type { RouteChoice } from '../builder/route.js'
import { runnerPlatform } from '../core/keys.js'
import type { PlanInputs } from '../core/plan.js'
import { InputError } from '../errors.js'
import { parseInputList } from '../input-list.js'
import { log } from '../log.js'
import { parseBuildArgs, resolveMounts, type DockerfileSource, type ResolvedMounts } from '../mounts/sources.js'
import { parseSize } from '../mounts/spec.js'
import { parseBackend } from '../storage/select.js'
import { INPUT_DEFAULTS } from './input-defaults.js'

/** Input names as in action.yml. Defaults live in action.yml only (input-defaults.ts is generated from it). */
export const InputName = {
  mounts: 'mounts',
  keyFiles: 'key-files',
  keyPrefix: 'key-prefix',
  builder: 'builder',
  utilityImage: 'utility-image',
  client: 'client',
  keyPlatform: 'key-platform',
  /** Deprecated alias of key-platform. */
  platform: 'platform',
  save: 'save',
  maxSize: 'max-size',
  extractVia: 'extract-via',
  maxRestoreSize: 'max-restore-size',
  dockerfile: 'dockerfile',
  context: 'context',
  file: 'file',
  target: 'target',
  buildArgs: 'build-args',
  platforms: 'platforms',
  backend: 'backend',
  state: 'state',
  lookupOnly: 'lookup-only',
  failOnCacheMiss: 'fail-on-cache-miss',
  exactMatch: 'exact-match',
  deleteSuperseded: 'delete-superseded',
  deltas: 'deltas',
  /** Read by post and save/ only, for deleting (githubTokenInput); never part of Inputs or the state. */
  githubToken: 'github-token'
} as const

/** Every input, read and validated once. */
export interface Inputs extends PlanInputs {
  /** Where entries live: github (the Actions cache), dir:/path, s3://bucket/prefix (see src/storage/select.ts). */
  backend: string
  /** Fail the step when a mount finds no entry at all (input fail-on-cache-miss). */
  failOnCacheMiss: boolean
}

/** Reads one input's raw text by its action.yml name. */
export type InputReader = (name: string) => string

/**
 * A reader that gives an empty input its action.yml default, as the runner
 * does for an input that is not given (and as this action always did for
 * one given empty).
 */
export function withDefaults(read: InputReader): InputReader {
  return name => {
    const value = read(name)
    return value.trim() === '' ? (INPUT_DEFAULTS[name] ?? value) : value
  }
}

/** The action's reader: the runner's INPUT_* variables. */
export const actionInputs: InputReader = withDefaults(name => core.getInput(name))

const CLIENTS: readonly string[] = ['auto', 'buildx', 'docker']
const IMAGE_PATTERN = /^[a-z0-9][a-z0-9._/:@-]*$/
const BUILDER_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]*$/
const PLATFORM_PATTERN = /^[a-z0-9]+\/[a-z0-9]+(\/[a-z0-9]+)?$/
const PREFIX_PATTERN = /^[A-Za-z0-9._-]{1,100}$/
const MAX_IMAGE_LENGTH = 512
const MAX_BUILDER_LENGTH = 128
const MAX_PLATFORM_LENGTH = 64

/** What the `utility-image` input accepts: a lowercase image reference. */
export function isImageRef(value: string): boolean {
  return value.length <= MAX_IMAGE_LENGTH && IMAGE_PATTERN.test(value)
}

/** What the `builder` input accepts: a buildx builder name. */
export function isBuilderName(value: string): boolean {
  return value.length <= MAX_BUILDER_LENGTH && BUILDER_PATTERN.test(value)
}

/** A value quoted for an error message: JSON escapes (no raw newline reaches the log), at most ~80 characters. */
function shown(value: string): string {
  return JSON.stringify(value.length > 80 ? `${value.slice(0, 77)}...` : value)
}

/** Reads and validates every input once. Throws InputError naming the input. */
export function getInputs(read: InputReader = actionInputs): Inputs {
  const keyPrefix = read(InputName.keyPrefix).trim()
  if (!PREFIX_PATTERN.test(keyPrefix)) {
    throw new InputError(InputName.keyPrefix, 'must be 1-100 letters, digits, ".", "_" or "-"')
  }
  const utilityImage = read(InputName.utilityImage).trim()
  if (!isImageRef(utilityImage)) {
    throw new InputError(InputName.utilityImage, `${shown(utilityImage)} is not an image reference (lowercase name[:tag][@digest])`)
  }
  const builder = read(InputName.builder).trim()
  if (builder !== '' && !isBuilderName(builder)) {
    throw new InputError(InputName.builder, `${shown(builder)} is not a builder name (letters, digits, ".", "_", "-")`)
  }
  const client = read(InputName.client).trim()
  if (!CLIENTS.includes(client)) {
    throw new InputError(InputName.client, `must be one of ${CLIENTS.join(', ')}, got ${shown(client)}`)
  }
  const keyFiles = parseInputList(read(InputName.keyFiles), InputName.keyFiles)
  const platforms = platformsInput(read)
  const keyPlatform = keyPlatformInput(read, platforms)
  const resolved = readMounts(read, keyFiles, platforms)
  const inputs: Inputs = {
    mounts: resolved.mounts,
    keyFiles,
    keyPrefix,
    utilityImage,
    client: client as ClientChoice,
    // Keys follow the build's platforms (a per-platform matrix job keys itself), else the runner's.
    platform: keyPlatform || (platforms.length > 0 ? platforms.join(',') : runnerPlatform()),
    save: booleanInput(read, InputName.save),
    extractVia: extractViaInput(read),
    maxRestoreBytes: maxRestoreInput(read),
    backend: backendInput(read),
    lookupOnly: booleanInput(read, InputName.lookupOnly),
    exactMatch: booleanInput(read, InputName.exactMatch),
    failOnCacheMiss: booleanInput(read, InputName.failOnCacheMiss),
    deleteSuperseded: deleteSupersededInput(read),
    deltas: booleanInput(read, InputName.deltas)
  }
  if (builder !== '') inputs.builder = builder
  if (resolved.cacheNamespace !== undefined) inputs.cacheNamespace = resolved.cacheNamespace
  const maxSize = read(InputName.maxSize).trim()
  if (maxSize !== '') inputs.maxSize = parseSize(maxSize, InputName.maxSize, 'the value')
  return inputs
}

/** The `max-restore-size` input in bytes (e.g. 10G). */
function maxRestoreInput(read: InputReader): number {
  const text = read(InputName.maxRestoreSize).trim()
  const bytes = parseSize(text, InputName.maxRestoreSize, 'the value')
  if (!Number.isSafeInteger(bytes) || bytes < 1024) {
    throw new InputError(InputName.maxRestoreSize, `must be a size of at least 1K, like 500M or 10G, got ${shown(text)}`)
  }
  return bytes
}

function validPlatform(p: string): boolean {
  return p.length <= MAX_PLATFORM_LENGTH && PLATFORM_PATTERN.test(p)
}

/**
 * The `key-platform` input (or its deprecated alias `platform`), validated;
 * '' when not given. It changes only the keys: a warning says so when it
 * names a platform the build (`platforms`) does not build.
 */
function keyPlatformInput(read: InputReader, platforms: string[]): string {
  const given = read(InputName.keyPlatform).trim()
  const alias = read(InputName.platform).trim()
  for (const [name, value] of [
    [InputName.keyPlatform, given],
    [InputName.platform, alias]
  ] as const) {
    if (value !== '' && !validPlatform(value)) throw new InputError(name, `${shown(value)} is not a platform like linux/amd64`)
  }
  if (alias !== '') {
    log.warning(
      given === ''
        ? `Input "platform" is deprecated: use key-platform (the platform part of the cache keys; the build's platforms are the platforms input).`
        : `Input "platform" is deprecated and ignored: key-platform is set.`
    )
  }
  const keyPlatform = given || alias
  if (keyPlatform !== '' && platforms.length > 0 && !platforms.includes(keyPlatform)) {
    log.warning(
      `key-platform ${shown(keyPlatform)} is not one of platforms (${platforms.join(', ')}): it changes only the keys; $TARGETARCH and the other platform variables in mount ids resolve for platforms, not for key-platform.`
    )
  }
  return keyPlatform
}

/**
 * The Dockerfiles to search: `file` and the `dockerfile` list (each must
 * exist), else, when `mounts` is empty too, the default `{context}/Dockerfile`
 * (when missing: a warning with a hint, never a failed step).
 */
function dockerfileSources(read: InputReader, mountsGiven: boolean): DockerfileSource[] {
  const sources: DockerfileSource[] = listInput(read(InputName.dockerfile)).map(path => ({ path, input: InputName.dockerfile }))
  const file = read(InputName.file).trim()
  if (file !== '' && !sources.some(s => s.path === file)) sources.unshift({ path: file, input: InputName.file })
  if (sources.length > 0 || mountsGiven) return sources
  const context = contextDir(read(InputName.context).trim() || '.')
  if (context === undefined) {
    log.warning(
      `context ${shown(read(InputName.context).trim())} is not a local directory: no Dockerfile to search for cache mounts. Set file (or dockerfile) to the Dockerfile's path in the workspace, or list the mounts in mounts.`
    )
    return []
  }
  const path = posix.join(context, 'Dockerfile')
  return [
    {
      path,
      input: InputName.file,
      missingHint: `No Dockerfile at "${path}" (the default, {context}/Dockerfile), so no cache mounts were found: set file (or context) to where your Dockerfile is, dockerfile to several, or list the mounts in mounts`
    }
  ]
}

/**
 * The local directory of a build-push-action `context`: a path, or
 * `{{defaultContext}}:subdir` (the repository at the workspace); undefined
 * for a remote context (a Git or HTTP URL).
 */
function contextDir(context: string): string | undefined {
  const git = /^\{\{\s*defaultContext\s*\}\}(?::(.*))?$/.exec(context)
  if (git) return posix.normalize(git[1] || '.')
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(context) || context.startsWith('git@') || context === '-') return undefined
  return posix.normalize(context)
}

/**
 * The mounts to persist: the `mounts` input, plus those found in the
 * Dockerfiles (see dockerfileSources). Logs the table and discovery warnings.
 */
function readMounts(read: InputReader, stepKeyFiles: string[], platforms: string[]): ResolvedMounts {
  const mountsText = read(InputName.mounts)
  const dockerfiles = dockerfileSources(read, mountsText.trim() !== '')
  const target = read(InputName.target).trim()
  if (target !== '' && dockerfiles.length === 0) {
    log.warning(`target ${shown(target)} is not used: no Dockerfile is searched for cache mounts (set file or dockerfile).`)
  }
  const buildPlatform = runnerPlatform()
  const resolved = resolveMounts({
    mountsText,
    dockerfiles,
    buildArgs: parseBuildArgs(read(InputName.buildArgs)),
    platforms: platforms.length > 0 ? platforms : [buildPlatform],
    buildPlatform,
    workspace: process.env.GITHUB_WORKSPACE || process.cwd(),
    stepKeyFiles,
    ...(target !== '' ? { target } : {})
  })
  if (resolved.report.length > 0) log.info(`Cache mounts:\n${resolved.report.join('\n')}`)
  for (const w of resolved.warnings) log.warning(w)
  if (resolved.mounts.length === 0 && (resolved.searched.length > 0 || dockerfiles.length === 0)) {
    log.warning(
      `No cache mounts to persist: none in the mounts input${resolved.searched.length > 0 ? ` and none found in ${resolved.searched.join(', ')}` : ''}.`
    )
  }
  return resolved
}

/** The `delete-superseded` input: delete the entries a new full save replaces. */
export function deleteSupersededInput(read: InputReader): boolean {
  return booleanInput(read, InputName.deleteSuperseded)
}

/**
 * The `github-token` input, masked in the log from here on; undefined when
 * empty. Only the step that saves reads it (to delete superseded entries),
 * and it goes to the store alone: never into the inputs, the state or a
 * message (a bad one is described, not shown).
 */
export function githubTokenInput(read: InputReader = actionInputs): string | undefined {
  const token = read(InputName.githubToken).trim()
  if (token === '') return undefined
  core.setSecret(token)
  if (!/^[\x21-\x7e]+$/.test(token)) throw new InputError(InputName.githubToken, 'must be one token: printable characters, no spaces or line breaks')
  return token
}

/** The `backend` input, checked here so a bad spec fails the step before anything runs. */
export function backendInput(read: InputReader): string {
  const backend = read(InputName.backend).trim()
  parseBackend(backend)
  return backend
}

function extractViaInput(read: InputReader): RouteChoice {
  const value = read(InputName.extractVia).trim()
  if (!EXTRACT_CHOICES.includes(value)) {
    throw new InputError(InputName.extractVia, `must be one of ${EXTRACT_CHOICES.join(', ')}, got ${shown(value)}`)
  }
  return value as RouteChoice
}

const EXTRACT_CHOICES: readonly string[] = ['auto', 'loopback', 'export']

/** The `platforms` input: comma or newline separated; empty when not given. */
function platformsInput(read: InputReader): string[] {
  const platforms = read(InputName.platforms)
    .split(/[,\n]/)
    .map(p => p.trim())
    .filter(p => p !== '')
  for (const p of platforms) {
    if (!validPlatform(p)) throw new InputError(InputName.platforms, `${shown(p)} is not a platform like linux/arm64`)
  }
  return platforms
}

/** A YAML 1.2 core-schema boolean, like core.getBooleanInput. */
function booleanInput(read: InputReader, name: string): boolean {
  const value = read(name).trim()
  if (['true', 'True', 'TRUE'].includes(value)) return true
  if (['false', 'False', 'FALSE'].includes(value)) return false
  throw new InputError(name, `must be true or false, got ${shown(value)}`)
}

/** One entry per line; blank lines and surrounding spaces dropped. */
export function listInput(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map(s => s.trim())
    .filter(s => s !== '')
}
