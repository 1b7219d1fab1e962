// The action metadata agrees with the code: every input the code reads is
// declared (with a description), every declared input is read, entry points
// exist in dist/, and the runtime is node24. The three action.yml files agree
// with each other on what they share (readme.test.ts checks them against the
// README's tables).
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'

import { describe, expect, test } from '@jest/globals'
import { load } from 'js-yaml'

import { InputName } from '../src/action/inputs.js'
import { ACTION_FILES, actionMeta } from '../test-support/examples.js'

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
  // Save-side inputs: restore/ saves nothing (and deletes nothing).
  ['restore/action.yml', ['save', 'state', 'delete-superseded', 'github-token']],
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

test('an input or output declared by several action.yml files has the same description and default in each', () => {
  // No documented differences: an input means the same in every step that takes it.
  const files = Object.values(ACTION_FILES).map(path => ({ path, meta: actionMeta(path) }))
  const differences: string[] = []
  for (const [i, a] of files.entries()) {
    for (const b of files.slice(i + 1)) {
      for (const [name, input] of a.meta.inputs) {
        const other = b.meta.inputs.get(name)
        if (other === undefined) continue
        if (other.default !== input.default)
          differences.push(`input ${name}: default ${JSON.stringify(input.default)} in ${a.path}, ${JSON.stringify(other.default)} in ${b.path}`)
        if (other.description !== input.description) differences.push(`input ${name}: the description differs between ${a.path} and ${b.path}`)
      }
      for (const [name, description] of a.meta.outputs) {
        const other = b.meta.outputs.get(name)
        if (other !== undefined && other !== description) differences.push(`output ${name}: the description differs between ${a.path} and ${b.path}`)
      }
    }
  }
  expect(differences).toEqual([])
})
