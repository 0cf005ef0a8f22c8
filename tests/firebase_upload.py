"""What the Firebase CLI uploads of a functions codebase, listed with its own code (tests/tools)."""

# What firebase-tools' prepareFunctionsUpload does: the codebase's ignore list (plus what it
# always adds) through its own readdirRecursive.
UPLOAD_JS = """
const path = require("path");
const { readdirRecursive } = require(process.argv[1]);
const cfg = require(process.argv[2]).functions[0];
const source = path.resolve(path.dirname(process.argv[2]), cfg.source);
const ignore = [...(cfg.ignore || ["node_modules", ".git"]), "firebase-debug.log", "firebase-debug.*.log", ".runtimeconfig.json"];
readdirRecursive({ path: source, ignoreStrings: ignore }).then((files) => {
  console.log(JSON.stringify(files.map((f) => path.relative(source, f.name))));
});
"""
