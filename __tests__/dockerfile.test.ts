import { describe, expect, test } from '@jest/globals'

import { cacheMountFlag, extractDockerfile, injectDockerfile, type ExtractMode } from '../src/builder/dockerfile.js'

describe('cacheMountFlag', () => {
  test.each([
    [1, { id: 'npm', target: '/root/.npm' }, '--mount=type=cache,id=npm,target=/bmc/c0,sharing=locked'],
    [
      2,
      { id: '/go/pkg/mod', target: '/go/pkg/mod', uid: 1000, gid: 0, mode: 0o700 },
      '--mount=type=cache,id=/go/pkg/mod,target=/bmc/c0,uid=1000,gid=0,mode=0700,sharing=locked'
    ],
    [3, { id: 'x', target: '/x', mode: 0 }, '--mount=type=cache,id=x,target=/bmc/c0,mode=00,sharing=locked']
  ])('%i', (_n, spec, expected) => {
    expect(cacheMountFlag({ index: 0, spec })).toBe(expected)
  })

  test.each([['a,b'], ['a b'], ['$X'], ['a"b'], ['a\nRUN x']])('refuses unsafe id %j', id => {
    expect(() => cacheMountFlag({ index: 0, spec: { id, target: '/x' } })).toThrow(/unsafe cache id/)
  })
})

test('context inject Dockerfile unpacks the stream file of the context into every mount in one RUN and exports the manifests', () => {
  const text = injectDockerfile('busybox:1.36', [
    { index: 0, spec: { id: 'a', target: '/a' } },
    { index: 2, spec: { id: 'c', target: '/c', uid: 1 } }
  ])
  expect(text.split('\n').filter(l => l.startsWith('RUN'))).toHaveLength(1)
  expect(text).toContain('--mount=type=cache,id=c,target=/bmc/c2,uid=1,sharing=locked')
  expect(text).toContain('--mount=type=bind,source=mounts.tar,target=/bmc/in/mounts.tar')
  expect(text).toContain('tar -x -f /bmc/in/mounts.tar -C /bmc')
  expect(text).toContain('done < /bmc/fixups')
  expect(text).not.toContain('nc 127.0.0.1')
  expect(text).toMatch(/^FROM busybox:1\.36 AS inject\nARG BMC_NONCE\n/)
  expect(text).toMatch(/FROM scratch\nCOPY --from=inject \/bmc\/out \/\n$/)
  // Each mount's listing and manifest; the listing is kept only for a mount that was empty before.
  expect(text).toContain('e= && for c in c0 c2; do [ -n "$(ls -A /bmc/$c)" ] || e="$e $c"; done')
  expect(text).toContain('list c2 > /bmc/out/listing.2 && echo "2 $(manifest /bmc/out/listing.2)" >> /bmc/out/manifests')
  expect(text).toContain('*" c2 "*) plain c2 /bmc/out/listing.2 ;; *) false ;; esac || rm /bmc/out/listing.2;')
})

test('loopback inject Dockerfile unpacks the stream into the mounts and applies its fix-up list', () => {
  const text = injectDockerfile('img', [{ index: 1, spec: { id: 'a', target: '/a' } }], { host: '127.0.0.1' })
  expect(text).not.toContain('type=bind')
  expect(text).toContain('ARG BMC_PORT\nARG BMC_TOKEN\n')
  expect(text).toContain('echo "$BMC_TOKEN" | nc 127.0.0.1 "$BMC_PORT" | tar -x -C /bmc')
  expect(text).toContain('test -f /bmc/fixups')
  expect(text).toContain('done < /bmc/fixups')
  expect(text.split('\n').filter(l => l.startsWith('RUN'))).toHaveLength(1)
})

test.each([
  [{ host: '127.0.0.1' }, /\{ echo "\$BMC_TOKEN"; \{ tar -c -C \/bmc status \$x \$d && .*; \}; \} \| nc 127\.0\.0\.1 "\$BMC_PORT"/],
  [{ host: '172.17.0.1' }, /\{ echo "\$BMC_TOKEN"; \{ tar -c -C \/bmc status \$x \$d && .*; \}; \} \| nc 172\.17\.0\.1 "\$BMC_PORT"/],
  ['export', /\{ tar -c -C \/bmc status \$x \$d && .*; \} > \/bmc\/out\/mounts\.tar/]
] as [ExtractMode, RegExp][])('extract Dockerfile (%j) mounts read-only and tars every changed mount in one RUN', (mode, command) => {
  const text = extractDockerfile(
    'img',
    [
      { index: 1, spec: { id: 'a', target: '/a' } },
      { index: 3, spec: { id: 'b', target: '/b' } }
    ],
    mode
  )
  expect(text).toContain('ARG BMC_MANIFEST_1\nARG BMC_DELTA_1\nARG BMC_MANIFEST_3\nARG BMC_DELTA_3\n')
  expect(text).toContain('if [ -n "$BMC_MANIFEST_3" ] && [ "$(manifest /bmc/now.3)" = "$BMC_MANIFEST_3" ]; then echo c3 >> /bmc/status; elif')
  expect(text).toContain('{ for c in 1 3; do list c$c > /bmc/now.$c & done; wait; }')
  // A delta only where asked, with inject's listing in the context, plain names and a working tar; else whole.
  expect(text).toContain('elif [ -n "$ok" ] && [ -n "$BMC_DELTA_3" ] && [ -f /bmc/in/listing.3 ] && plain c3 /bmc/now.3 && : > /bmc/delta.c3 && awk ')
  expect(text).toContain('then cat /bmc/changed.3 >> /bmc/names; x="$x delta.c3"; else d="$d c3"; fi')
  // The deltas' names go to one tar: half of the names budget for each of the two mounts.
  expect(text).toContain('-v nb=900000 ')
  expect(text).toContain("tr '\\n' '\\000' < names | xargs -0 -s 1900000 tar -c --no-recursion")
  expect(text).toContain('--mount=type=bind,target=/bmc/in \\')
  expect(text).toContain('--mount=type=cache,id=a,target=/bmc/c1,sharing=locked,readonly')
  expect(text).toMatch(command)
  expect(text.split('\n').filter(l => l.startsWith('RUN'))).toHaveLength(1)
})

test('an unsafe image never reaches the text', () => {
  expect(() => injectDockerfile('img\nRUN evil', [{ index: 0, spec: { id: 'a', target: '/a' } }])).toThrow(/unsafe image/)
})

test('a stream address that is not an IPv4 address never reaches the Dockerfile', () => {
  const mounts = [{ index: 0, spec: { id: 'a', target: '/a' } }]
  for (const host of ['127.0.0.1; rm -rf /', '$(id)', 'localhost', '300.1.1.1', '']) {
    expect(() => injectDockerfile('img', mounts, { host })).toThrow(/unsafe stream address/)
    expect(() => extractDockerfile('img', mounts, { host })).toThrow(/unsafe stream address/)
  }
})
