// The warning when the utility image cannot be pulled, from the errors real
// engines print (dockerd 26 + buildx 0.13 and the classic client, here).
import { expect, test } from '@jest/globals'

import { buildFailureReason, isImagePullFailure } from '../src/builder/image-pull.js'

const IMAGE = '127.0.0.1:5757/bmc-nonexistent/busybox:1'
const NOT_FOUND = `docker buildx build failed (exit 1): ERROR: failed to solve: ${IMAGE}: failed to resolve source metadata for ${IMAGE}: ${IMAGE}: not found`
const CLASSIC = `docker build failed (exit 1): #2 ERROR: ${IMAGE}: not found\n------\n > [internal] load metadata for ${IMAGE}:\n------\n${IMAGE}: failed to resolve source metadata for ${IMAGE}: ${IMAGE}: not found`
const UNREACHABLE =
  'docker buildx build failed (exit 1): ERROR: failed to solve: localhost:1/nope:latest: failed to resolve source metadata for localhost:1/nope:latest: failed to do request: Head "https://localhost:1/v2/nope/manifests/latest": dial tcp 127.0.0.1:1: connect: connection refused'
const RATE_LIMITED =
  'docker buildx build failed (exit 1): ERROR: failed to solve: busybox:1: failed to copy: httpReadSeeker: failed open: unexpected status code https://registry-1.docker.io/v2/library/busybox/manifests/sha256:ad9f: 429 Too Many Requests - Server message: toomanyrequests: You have reached your unauthenticated pull rate limit.'

test.each([
  ['not found (buildx)', NOT_FOUND],
  ['not found (classic client)', CLASSIC],
  ['registry unreachable', UNREACHABLE],
  ['rate limited', RATE_LIMITED]
])('%s: named as a pull failure of the utility image, with the input to set', (_name, message) => {
  expect(isImagePullFailure(new Error(message))).toBe(true)
  expect(buildFailureReason(IMAGE, new Error(message))).toBe(
    `the utility image ${IMAGE} could not be pulled (set the utility-image input to an image this builder can pull, e.g. a busybox mirror): ${message}`
  )
})

test('any other build failure is reported as it is', () => {
  const message = 'docker buildx build failed (exit 1): process "/bin/sh -c set -o pipefail" did not complete successfully: exit code: 1'
  expect(isImagePullFailure(new Error(message))).toBe(false)
  expect(buildFailureReason(IMAGE, new Error(message))).toBe(message)
})
