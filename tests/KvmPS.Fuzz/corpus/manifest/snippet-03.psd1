@{ s = @'
here
'@; t = 'it''s'; u = 1kb + 2 }