# test-target: nope
FROM alpine AS build
FROM alpine AS final
