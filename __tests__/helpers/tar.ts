// In-memory tar helpers for tests: one implementation, shared with the fakes.
export { makeTar, readTar, type RawEntry, type ReadEntry } from '../../test-support/fakes/tar.js'
