import { type Value } from './shell-lex.js'

/**
 * Target and build platforms as BuildKit sees them: the normalisation
 * containerd applies to `--platform` values, and the automatic platform ARGs
 * (BUILDPLATFORM, TARGETARCH, ...) the Dockerfile frontend derives from them
 * (moby/buildkit frontend/dockerfile/dockerfile2llb/platform.go). Cache ids
 * often depend on these ARGs, so one Dockerfile can use different caches per
 * target platform.
 */

/** A normalized platform; variant is '' when it has none. */
export interface Platform {
  os: string
  arch: string
  variant: string
}

const KNOWN_OS = new Set(
  'aix android darwin dragonfly freebsd hurd illumos ios js linux nacl netbsd openbsd plan9 solaris wasip1 windows zos'.split(' ')
)
const KNOWN_ARCH = new Set(
  (
    '386 amd64 amd64p32 arm armbe arm64 arm64be loong64 mips mipsle mips64 mips64le mips64p32 mips64p32le ' +
    'ppc ppc64 ppc64le riscv riscv64 s390 s390x sparc sparc64 wasm'
  ).split(' ')
)
const PLATFORM_PART = /^[A-Za-z0-9_-]+$/

/**
 * containerd's platforms.Parse followed by Normalize, as BuildKit applies to
 * `--platform` (dockerui attr.go parsePlatforms): `linux/arm` becomes arm/v7,
 * `linux/arm64/v8` becomes arm64 without variant. A lone OS takes the build
 * platform's architecture (the frontend's own, in BuildKit).
 */
export function parsePlatform(text: string, build?: Platform): Platform | undefined {
  const parts = text.trim().split('/')
  if (parts.length > 3 || parts.some(p => !PLATFORM_PART.test(p))) return undefined
  const [first, second, third] = parts as [string, string | undefined, string | undefined]
  let p: Platform
  if (second === undefined) {
    const os = normalizeOs(first)
    if (KNOWN_OS.has(os)) {
      if (build === undefined) return undefined
      p = { os, arch: build.arch, variant: build.variant }
    } else {
      const [arch, variant] = normalizeArch(first, '')
      if (!KNOWN_ARCH.has(arch)) return undefined
      p = { os: 'linux', arch, variant: arch === 'arm' && variant === 'v7' ? '' : variant }
    }
  } else if (third === undefined) {
    const [arch, variant] = normalizeArch(second, '')
    p = { os: normalizeOs(first), arch, variant: arch === 'arm' && variant === 'v7' ? '' : variant }
  } else {
    const [arch, variant] = normalizeArch(second, third)
    p = { os: normalizeOs(first), arch, variant: arch === 'arm64' && variant === '' ? 'v8' : variant }
  }
  const [arch, variant] = normalizeArch(p.arch, p.variant)
  return { os: p.os, arch, variant }
}

function normalizeOs(os: string): string {
  const lower = os.toLowerCase()
  return lower === 'macos' ? 'darwin' : lower
}

function normalizeArch(archIn: string, variantIn: string): [string, string] {
  const arch = archIn.toLowerCase()
  const variant = variantIn.toLowerCase()
  switch (arch) {
    case 'i386':
      return ['386', '']
    case 'x86_64':
    case 'x86-64':
    case 'amd64':
      return ['amd64', variant === 'v1' ? '' : variant]
    case 'aarch64':
    case 'arm64':
      if (['8', 'v8', 'v8.0'].includes(variant)) return ['arm64', '']
      if (['9', '9.0', 'v9.0'].includes(variant)) return ['arm64', 'v9']
      return ['arm64', variant]
    case 'armhf':
      return ['arm', 'v7']
    case 'armel':
      return ['arm', 'v6']
    case 'arm':
      if (variant === '' || variant === '7') return ['arm', 'v7']
      if (['5', '6', '8'].includes(variant)) return ['arm', `v${variant}`]
      return ['arm', variant]
    default:
      return [arch, variant]
  }
}

function formatPlatform(p: Platform): string {
  return [p.os, p.arch, p.variant].filter(s => s !== '').join('/')
}

/**
 * BuildKit's automatic ARGs for one target platform (dockerfile2llb
 * platform.go defaultArgs). They live in the global scope only: a stage sees
 * one after re-declaring it (`ARG TARGETARCH`). TARGETSTAGE assumes no
 * `--target`, i.e. the last stage.
 */
export function automaticArgs(target: Platform, build: Platform | undefined, targetStage: string): Map<string, Value> {
  const buildValue = (pick: (p: Platform) => string): Value => (build === undefined ? null : pick(build))
  return new Map<string, Value>([
    ['BUILDPLATFORM', buildValue(formatPlatform)],
    ['BUILDOS', buildValue(p => p.os)],
    ['BUILDOSVERSION', buildValue(() => '')],
    ['BUILDARCH', buildValue(p => p.arch)],
    ['BUILDVARIANT', buildValue(p => p.variant)],
    ['TARGETPLATFORM', formatPlatform(target)],
    ['TARGETOS', target.os],
    ['TARGETOSVERSION', ''],
    ['TARGETARCH', target.arch],
    ['TARGETVARIANT', target.variant],
    ['TARGETSTAGE', targetStage]
  ])
}
