# syntax=docker/dockerfile:1.7
# check=skip=all
FROM alpine AS x
FROM alpine AS x
