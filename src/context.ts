import { tmpdir } from 'node:os'
import { join } from 'node:path'

import * as core from '@actions/core'

import type { ClientChoice } from './engine.js'
import type { ExtractChoice } from './extract.js'
import { InputError } from './errors.js'
import { idSegment, runnerPlatform } from './keys.js'
import { log } from './log.js'
import { parseBuildArgs, resolveMounts, type ResolvedMounts } from './mount-sources.js'
import { parseSize, type MountSpec } from './mounts.js'
import { parseBackend } from './storage/select.js'

/** Input names as in action.yml. Defaults live in action.yml only. */
export const InputName = {
  mounts: 'mounts',
  keyFiles: 'key-files',
  keyPrefix: 'key-prefix',
  builder: 'builder',
  utilityImage: 'utility-image',
  client: 'client',
  platform: 'platform',
  save: 'save',
  maxSize: 'max-size',
  extractVia: 'extract-via',
  maxRestoreSize: 'max-restore-size',
  dockerfile: 'dockerfile',
  buildArgs: 'build-args',
  platforms: 'platforms',
  backend: 'backend',
  state: 'state'
} as const

export interface Inputs {
  mounts: MountSpec[]
  /** BUILDKIT_CACHE_MOUNT_NS of the user's build, passed on to the generated builds. */
  cacheNamespace?: string
  /** Glob patterns, one per entry. */
  keyFiles: string[]
  keyPrefix: string
  builder?: string
  utilityImage: string
  client: ClientChoice
  /** Docker platform notation, e.g. linux/amd64. */
  platform: string
  /** Whether the post step saves (false: restore only, e.g. for pull requests). */
  save: boolean
  /** Bytes above which a mount is not saved (a mount's own max-size wins). */
  maxSize?: number
  /**
   * Largest tree one restored archive may expand to (content plus 512 bytes
   * per entry); a larger one is refused as an archive bomb. Input
   * max-restore-size; DEFAULT_MAX_RESTORE_BYTES when not given.
   */
  maxRestoreBytes?: number
  /** How post extracts: auto (loopback stream, falling back to the exporter), loopback or export. */
  extractVia: ExtractChoice
  /** Where entries live: '' or github (the Actions cache), dir:/path, s3://bucket/prefix (see src/storage/select.ts). */
  backend: string
}

export const DEFAULT_MAX_RESTORE_BYTES = 64 * 1024 ** 3

const CLIENTS: readonly string[] = ['auto', 'buildx', 'docker']
const IMAGE_PATTERN = /^[a-z0-9][a-z0-9._/:@-]*$/
const BUILDER_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]*$/
const PLATFORM_PATTERN = /^[a-z0-9]+\/[a-z0-9]+(\/[a-z0-9]+)?$/
const PREFIX_PATTERN = /^[A-Za-z0-9._-]{1,100}$/
const MAX_IMAGE_LENGTH = 512
const MAX_BUILDER_LENGTH = 128
const MAX_PLATFORM_LENGTH = 64

/** A value quoted for an error message: JSON escapes (no raw newline reaches the log), at most ~80 characters. */
function shown(value: string): string {
  return JSON.stringify(value.length > 80 ? `${value.slice(0, 77)}...` : value)
}

/** Reads and validates every input once. Throws InputError naming the input. */
export function getInputs(): Inputs {
  const keyPrefix = core.getInput(InputName.keyPrefix).trim() || 'buildkit-mount-cache'
  if (!PREFIX_PATTERN.test(keyPrefix)) {
    throw new InputError(InputName.keyPrefix, 'must be 1-100 letters, digits, ".", "_" or "-"')
  }
  const utilityImage = core.getInput(InputName.utilityImage).trim() || 'busybox:1.36'
  if (utilityImage.length > MAX_IMAGE_LENGTH || !IMAGE_PATTERN.test(utilityImage)) {
    throw new InputError(InputName.utilityImage, `${shown(utilityImage)} is not an image reference (lowercase name[:tag][@digest])`)
  }
  const builder = core.getInput(InputName.builder).trim()
  if (builder !== '' && (builder.length > MAX_BUILDER_LENGTH || !BUILDER_PATTERN.test(builder))) {
    throw new InputError(InputName.builder, `${shown(builder)} is not a builder name (letters, digits, ".", "_", "-")`)
  }
  const client = core.getInput(InputName.client).trim() || 'auto'
  if (!CLIENTS.includes(client)) {
    throw new InputError(InputName.client, `must be one of ${CLIENTS.join(', ')}, got ${shown(client)}`)
  }
  const platform = core.getInput(InputName.platform).trim()
  if (platform !== '' && !validPlatform(platform)) {
    throw new InputError(InputName.platform, `${shown(platform)} is not a platform like linux/amd64`)
  }
  const keyFiles = listInput(core.getInput(InputName.keyFiles))
  const platforms = platformsInput()
  const resolved = readMounts(keyFiles, platforms)
  const inputs: Inputs = {
    mounts: resolved.mounts,
    keyFiles,
    keyPrefix,
    utilityImage,
    client: client as ClientChoice,
    // Keys follow the build's platforms (a per-platform matrix job keys itself), else the runner's.
    platform: platform || (platforms.length > 0 ? platforms.join(',') : runnerPlatform()),
    save: booleanInput(InputName.save, true),
    extractVia: extractViaInput(),
    backend: backendInput()
  }
  if (builder !== '') inputs.builder = builder
  if (resolved.cacheNamespace !== undefined) inputs.cacheNamespace = resolved.cacheNamespace
  const maxSize = core.getInput(InputName.maxSize).trim()
  if (maxSize !== '') inputs.maxSize = parseSize(maxSize, InputName.maxSize, 'the value')
  inputs.maxRestoreBytes = maxRestoreInput()
  return inputs
}

/** The `max-restore-size` input in bytes (e.g. 10G); DEFAULT_MAX_RESTORE_BYTES when empty. */
export function maxRestoreInput(): number {
  const text = core.getInput(InputName.maxRestoreSize).trim()
  if (text === '') return DEFAULT_MAX_RESTORE_BYTES
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
 * The mounts to persist: the `mounts` input, plus those found in the
 * `dockerfile`s (default `Dockerfile` when `mounts` is empty). Logs the table
 * and discovery warnings.
 */
function readMounts(stepKeyFiles: string[], platforms: string[]): ResolvedMounts {
  const mountsText = core.getInput(InputName.mounts)
  let dockerfiles = listInput(core.getInput(InputName.dockerfile))
  if (dockerfiles.length === 0 && mountsText.trim() === '') dockerfiles = ['Dockerfile']
  const buildPlatform = runnerPlatform()
  const resolved = resolveMounts({
    mountsText,
    dockerfiles,
    buildArgs: parseBuildArgs(core.getInput(InputName.buildArgs)),
    platforms: platforms.length > 0 ? platforms : [buildPlatform],
    buildPlatform,
    workspace: process.env.GITHUB_WORKSPACE || process.cwd(),
    stepKeyFiles
  })
  if (resolved.report.length > 0) log.info(`Cache mounts:\n${resolved.report.join('\n')}`)
  for (const w of resolved.warnings) log.warning(w)
  if (resolved.mounts.length === 0) {
    log.warning(
      `No cache mounts to persist: none in the mounts input${dockerfiles.length > 0 ? ` and none found in ${dockerfiles.join(', ')}` : ''}.`
    )
  }
  return resolved
}

/** The `backend` input, checked here so a bad spec fails the step before anything runs. */
function backendInput(): string {
  const backend = core.getInput(InputName.backend).trim()
  parseBackend(backend)
  return backend
}

function extractViaInput(): ExtractChoice {
  const value = core.getInput(InputName.extractVia).trim() || 'auto'
  if (!EXTRACT_CHOICES.includes(value)) {
    throw new InputError(InputName.extractVia, `must be one of ${EXTRACT_CHOICES.join(', ')}, got ${shown(value)}`)
  }
  return value as ExtractChoice
}

const EXTRACT_CHOICES: readonly string[] = ['auto', 'loopback', 'export']

/** The `platforms` input: comma or newline separated; empty when not given. */
function platformsInput(): string[] {
  const platforms = core
    .getInput(InputName.platforms)
    .split(/[,\n]/)
    .map(p => p.trim())
    .filter(p => p !== '')
  for (const p of platforms) {
    if (!validPlatform(p)) throw new InputError(InputName.platforms, `${shown(p)} is not a platform like linux/arm64`)
  }
  return platforms
}

/** A YAML 1.2 core-schema boolean, like core.getBooleanInput, with a default for an empty input. */
export function booleanInput(name: string, fallback: boolean): boolean {
  const value = core.getInput(name).trim()
  if (value === '') return fallback
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

/**
 * Where a mount's archive lives between the cache and the builder. The same
 * string at restore and save (the cache hashes it into the entry version),
 * so it is derived from the id only, under the runner's temp directory.
 */
export function mountArchivePath(id: string, env: NodeJS.ProcessEnv = process.env): string {
  return join(env.RUNNER_TEMP || tmpdir(), 'buildkit-mount-cache', `${idSegment(id)}.tar`)
}
