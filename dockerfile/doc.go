// Package dockerfile is stepexec's Dockerfile frontend: it turns a
// Dockerfile into a Graph of stages and never touches a store or runs
// anything (BuildKit's frontend/solver split).
//
// Parsing uses BuildKit's own parser and instruction parser, so syntax
// (line continuations, heredocs, the escape directive, JSON exec form with
// its shell-form fallback, ENV's two syntaxes, flags) behaves as with
// `docker build`.
//
// Terms:
//   - stage: a FROM and the instructions after it. Its base is an image,
//     "scratch", or an earlier stage (FROM <name>).
//   - dependency: a stage another one reads: its base stage, COPY --from,
//     RUN --mount from=. Only the target and its dependencies are built
//     (Graph.Needed); dependencies always come earlier in the file.
//   - global scope (Graph.MetaArgs): the automatic platform arguments and
//     the ARGs before the first FROM, with --build-arg values; FROM lines
//     are expanded with it.
//   - expansion: variables in an instruction's words are expanded with the
//     stage's variables when the instruction runs (Expander), since a base
//     image's ENV is only known then. Commands are immutable values;
//     expansion returns new ones.
//
// Errors are "FILE:LINE: message", collected for the whole file and
// reported together before anything runs.
package dockerfile
