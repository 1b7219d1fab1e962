import { errorMessage } from '../errors.js'

/**
 * Whether a generated build failed because its FROM, the utility image,
 * could not be pulled. BuildKit reports every such failure (unknown name or
 * tag, registry unreachable, rate limited, access denied) as
 * `failed to resolve source metadata for <image>`; the older messages of a
 * registry are matched too.
 */
export function isImagePullFailure(error: unknown): boolean {
  return PULL_FAILURE.test(errorMessage(error))
}

const PULL_FAILURE = /failed to resolve source metadata for|pull access denied|toomanyrequests|manifest unknown/i

/**
 * What a phase's warning says about `error`: for a utility image that
 * could not be pulled, the image, that it could not be pulled, and the input
 * to set; otherwise the error itself.
 */
export function buildFailureReason(image: string, error: unknown): string {
  if (!isImagePullFailure(error)) return errorMessage(error)
  return `the utility image ${image} could not be pulled (set the utility-image input to an image this builder can pull, e.g. a busybox mirror): ${errorMessage(error)}`
}
