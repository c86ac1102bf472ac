FROM alpine AS base
RUN true
FROM base AS build
COPY --from=0 /a /a
COPY --from=base /b /b
COPY --from=busybox:latest /bin/busybox /bb
RUN --mount=type=bind,from=build-deps,target=/x true
FROM alpine AS unused
RUN --network=host true
FROM scratch
COPY --from=build /out /out
