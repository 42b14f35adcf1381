import sys

sys.setrecursionlimit(10**8)


class Deep:
    def __repr__(self):
        return repr(Deep())


repr(Deep())
