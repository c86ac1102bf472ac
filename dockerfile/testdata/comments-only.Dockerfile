
# only comments

