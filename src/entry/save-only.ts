import { runEntry, runSaveOnly } from './index.js'

// Input errors fail this step; cache and engine trouble are warnings inside.
runEntry(() => runSaveOnly(), true)
