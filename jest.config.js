// ESM throughout: the @actions/* packages are ESM-only, so tests run under
// Node's VM modules (NODE_OPTIONS=--experimental-vm-modules, set by npm test).
const common = {
  extensionsToTreatAsEsm: ['.ts'],
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  transform: {
    '^.+\\.ts$': ['ts-jest', { useESM: true }]
  },
  testEnvironment: 'node'
}

export default {
  // Unit tests take seconds; the integration tier sets its own bound (test-support/itg-timeout.ts).
  testTimeout: 20000,
  projects: [
    {
      ...common,
      displayName: 'unit',
      testMatch: ['<rootDir>/__tests__/**/*.test.ts'],
      testPathIgnorePatterns: ['\\.itg\\.test\\.ts$']
    },
    {
      ...common,
      displayName: 'itg',
      testMatch: ['<rootDir>/__tests__/**/*.itg.test.ts'],
      setupFilesAfterEnv: ['<rootDir>/test-support/itg-timeout.ts']
    }
  ]
}
