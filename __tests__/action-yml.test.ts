// The action metadata agrees with the code: every input the code reads is
// declared (with a description), every declared input is read, entry points
// exist in dist/, and the runtime is node24.
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'

import { describe, expect, test } from '@jest/globals'
import { load } from 'js-yaml'

import { InputName } from '../src/action/inputs.js'

interface ActionYml {
  name: string
  description: string
  inputs: Record<string, { description?: string; default?: string; required?: boolean }>
  outputs?: Record<string, { description?: string }>
  runs: { using: string; main: string; post?: string; 'post-if'?: string }
}

const root = join(dirname(new URL(import.meta.url).pathname), '..')
const read = (path: string): ActionYml => load(readFileSync(join(root, path), 'utf8')) as ActionYml
const codeInputs = Object.values(InputName) as string[]

describe.each([
  ['action.yml', ['state']],
  ['restore/action.yml', ['save', 'state']],
  // Restore-side switches: save/ restores nothing.
  ['save/action.yml', ['save', 'lookup-only', 'fail-on-cache-miss', 'exact-match']]
])('%s', (path, notHere) => {
  const action = read(path)

  test('runs on node24 with bundled entry points', () => {
    expect(action.runs.using).toBe('node24')
    for (const entry of [action.runs.main, action.runs.post].filter(Boolean) as string[]) {
      expect(existsSync(join(root, dirname(path), entry))).toBe(true)
    }
  })

  test('declares exactly the inputs the code reads, each described', () => {
    expect(Object.keys(action.inputs).sort()).toEqual(codeInputs.filter(i => !notHere.includes(i)).sort())
    for (const [name, input] of Object.entries(action.inputs)) {
      expect([name, (input.description ?? '').length > 10]).toEqual([name, true])
      expect(input.required).toBe(false)
    }
  })

  test('outputs are described', () => {
    for (const output of Object.values(action.outputs ?? {})) expect((output.description ?? '').length).toBeGreaterThan(10)
  })
})

test('the combined action saves in post only after success; sub-actions have no post', () => {
  expect(read('action.yml').runs).toMatchObject({ post: 'dist/post.cjs', 'post-if': 'success()' })
  expect(read('restore/action.yml').runs.post).toBeUndefined()
  expect(read('save/action.yml').runs.post).toBeUndefined()
})
