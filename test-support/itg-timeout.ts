// The integration tier's per-test bound: its tests drive a real engine and
// cache service (the unit tier keeps jest.config.js's 20 s).
import { jest } from '@jest/globals'

jest.setTimeout(300_000)
