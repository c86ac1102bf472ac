FROM alpine AS a
COPY --from=b /x /x
COPY --from=a /x /x
COPY --from=$X /x /x
COPY --from=7 /x /x
RUN --mount=from=b,target=/m true
FROM alpine AS b
RUN true
