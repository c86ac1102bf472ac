# escape=`
FROM alpine
RUN echo one `
    two
ENV P=C:\path\to
WORKDIR /dir/`$notvar
