return { version = require("clayer.embedded").version }
